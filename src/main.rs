fn main() -> std::process::ExitCode {
    oxinetd::cli::main()
}
