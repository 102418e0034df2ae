/* The exec'd server of benches/compare.sh: writes one line to fd 1 and exits.
 *
 * Built static and, on x86_64 and aarch64 Linux, without libc (-nostdlib -DONELINE_NOLIBC):
 * two system calls and nothing else. Static glibc's start-up runs CPUID dozens of times
 * (init_cacheinfo: intel_check_word), and in a virtual machine every CPUID traps to the
 * hypervisor: measured at about 0.6 ms of CPU per exec on the nested VM this benchmark
 * was written on, which made every superserver look alike at ~1,500 conns/s. Without
 * libc the exec'd server costs what the kernel's exec and exit cost, so the superservers'
 * own spawn paths show. Elsewhere it falls back to plain libc (-O2 -static). */
#if defined(ONELINE_NOLIBC) && defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
static const char line[] = "hello\n";

void _start(void)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(1L /* write */), "D"(1L), "S"(line), "d"(sizeof line - 1)
			 : "rcx", "r11", "memory");
	__asm__ volatile("syscall" : : "a"(231L /* exit_group */), "D"(0L) : "rcx", "r11", "memory");
#else
	register long x0 __asm__("x0") = 1;
	register long x1 __asm__("x1") = (long)line;
	register long x2 __asm__("x2") = sizeof line - 1;
	register long x8 __asm__("x8") = 64; /* write */
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x8) : "memory");
	x0 = 0;
	x8 = 94; /* exit_group */
	__asm__ volatile("svc #0" : : "r"(x0), "r"(x8) : "memory");
#endif
	for (;;)
		;
}
#else
#include <unistd.h>

int main(void)
{
	static const char line[] = "hello\n";
	(void)write(1, line, sizeof line - 1);
	_exit(0);
}
#endif
