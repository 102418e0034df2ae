//! `redirect = "host port"`: the daemon relays each connection to another TCP server:
//! bytes in both directions unchanged, half-closes passed on, an upstream that is down
//! ends the client's connection, TRAFFIC counts, names resolved, `idle_timeout`.
use crate::common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, Oxinetd, READY_TIMEOUT, free_port, have, read_to_eof, run_ok, tcp_connect, tempdir,
    v4,
};

/// A stream service `svc` on a free port relaying to `target` ("host port"), with
/// `extra` keys; the daemon and its port.
fn start_redirect(target: &str, extra: &str) -> (Oxinetd, u16) {
    let port = free_port();
    let config = format!(
        "[service.svc]\nsocket_type = \"stream\"\nwait = false\nport = {port}\n\
         redirect = \"{target}\"\n{extra}\n"
    );
    (Oxinetd::start(&config), port)
}

/// A TCP server of the test's own on 127.0.0.1 (port chosen by the kernel) that runs
/// `handle` for each connection in its own thread; lives until the test process ends.
fn upstream(handle: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind upstream");
    serve(listener, handle)
}

fn serve(listener: TcpListener, handle: fn(TcpStream)) -> u16 {
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            thread::spawn(move || handle(stream));
        }
    });
    port
}

/// Reads to EOF, then replies with the number of bytes read, and closes.
fn count_then_reply(mut stream: TcpStream) {
    let mut data = Vec::new();
    if stream.read_to_end(&mut data).is_ok() {
        let _ = stream.write_all(data.len().to_string().as_bytes());
    }
}

/// Echoes until EOF.
fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `input` from a second thread, half-closes, and reads the reply to EOF.
fn request(port: u16, input: &[u8]) -> Vec<u8> {
    let mut stream = tcp_connect(v4(port));
    let mut writer = stream.try_clone().unwrap();
    thread::scope(|s| {
        let written = s.spawn(move || {
            writer.write_all(input).expect("write request");
            writer.shutdown(Shutdown::Write).expect("half-close");
        });
        let reply = read_to_eof(&mut stream);
        written.join().expect("writer thread");
        reply
    })
}

/// `python3 -m http.server` serving a dir on 127.0.0.1; killed on drop.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> HttpServer {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 -m http.server");
        let mut server = HttpServer { child, port };
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(v4(port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("http.server exited ({status}) before accepting");
            }
            assert!(Instant::now() < deadline, "http.server did not accept");
            thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches http://127.0.0.1:PORT/NAME with curl; returns the body.
fn curl(port: u16, name: &str, out_dir: &Path) -> Vec<u8> {
    let out = out_dir.join(format!("{name}.fetched"));
    run_ok(
        Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--noproxy", "*"])
            .args(["--max-time", "10", "--output"])
            .arg(&out)
            .arg(format!("http://127.0.0.1:{port}/{name}")),
        Duration::from_secs(15),
    );
    fs::read(&out).expect("read fetched file")
}

/// Serves a dir holding `name` with `body` over HTTP through oxinetd and fetches it.
fn fetch_through_redirect(name: &str, body: &[u8]) {
    if !have("curl") || !have("python3") {
        common::skip("curl or python3 is not installed");
        return;
    }
    let site = tempdir();
    fs::write(site.path().join(name), body).unwrap();
    let http = HttpServer::start(site.path());
    let (daemon, port) = start_redirect(&format!("127.0.0.1 {}", http.port), "");
    let fetched = curl(port, name, site.path());
    assert!(
        fetched == body,
        "fetched {} bytes, want {} bytes",
        fetched.len(),
        body.len()
    );
    daemon.wait_for_log("START: svc");
}

#[test]
fn http_get_through_redirect_returns_the_file_byte_for_byte() {
    fetch_through_redirect("hello.txt", b"hello through oxinetd\r\n\0binary\xff\n");
}

#[test]
fn http_get_of_one_mib_through_redirect() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fetch_through_redirect("big.bin", &body);
}

#[test]
fn half_close_reaches_the_upstream_and_the_reply_comes_back() {
    let up = upstream(count_then_reply);
    let (_daemon, port) = start_redirect(&format!("127.0.0.1 {up}"), "");
    // More than a socket buffer holds, so the relay must keep both directions moving.
    let input = vec![b'x'; 300_000];
    assert_eq!(request(port, &input), b"300000");
    assert_eq!(request(port, b""), b"0");
}

/// A connection to 127.0.0.1:`port` with a receive buffer of a few KiB.
fn small_window_connect(port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect_timeout(&v4(port).into(), IO_TIMEOUT)
        .expect("connect");
    socket.into()
}

/// Issue 13: a relay holds buffers only while bytes are in flight, from a pool all relays
/// share. 200 relays that moved a line each and then sat idle each still carry their
/// own 32 KiB (two buffers' worth), all 200 in flight at once, unmixed. The clients'
/// small receive buffers make the relays hold bytes for them meanwhile.
#[test]
fn many_idle_relays_each_still_relay_their_own_bytes() {
    const RELAYS: usize = 200;
    const SIZE: usize = 32 * 1024;
    let up = upstream(echo);
    let (_daemon, port) = start_redirect(&format!("127.0.0.1 {up}"), "");
    let mut clients: Vec<TcpStream> = (0..RELAYS)
        .map(|i| {
            let mut client = small_window_connect(port);
            client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let line = format!("hello {i}\n");
            client.write_all(line.as_bytes()).unwrap();
            let mut got = vec![0; line.len()];
            client.read_exact(&mut got).expect("first line back");
            assert_eq!(got, line.as_bytes());
            client
        })
        .collect();
    let payload = |i: usize| -> Vec<u8> {
        (0..SIZE)
            .map(|j| (j as u8).wrapping_mul(31) ^ (i as u8))
            .collect()
    };
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(&payload(i)).expect("write payload");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = vec![0; SIZE];
        client.read_exact(&mut got).expect("payload back");
        assert!(got == payload(i), "relay {i} returned other bytes");
    }
}

#[test]
fn traffic_is_logged_with_exact_byte_counts() {
    let up = upstream(count_then_reply);
    let (daemon, port) = start_redirect(
        &format!("127.0.0.1 {up}"),
        "log_on_success = [\"HOST\", \"TRAFFIC\"]",
    );
    assert_eq!(request(port, &[b'y'; 12345]), b"12345");
    let log = daemon.wait_for_log("TRAFFIC: svc");
    let traffic: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find("TRAFFIC: svc").map(|i| &l[i..]))
        .collect();
    // in = from the client to the upstream, out = back to the client (xinetd's words).
    assert_eq!(traffic, ["TRAFFIC: svc in=12345(bytes) out=5(bytes)"]);
}

#[test]
fn upstream_down_closes_the_client_promptly_and_logs_a_failure() {
    // Nothing listens on a free port: the daemon's connect is refused at once.
    let down = free_port();
    let (daemon, port) = start_redirect(&format!("127.0.0.1 {down}"), "");
    let mut stream = tcp_connect(v4(port));
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("client got {n} bytes from a dead redirect"),
        Err(e) => panic!("no EOF within 5 s: {e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "EOF took {:?}",
        started.elapsed()
    );
    let log = daemon.wait_for_log("FAIL: svc");
    let fail = log
        .lines()
        .find_map(|l| l.find("FAIL: svc").map(|i| &l[i..]))
        .unwrap();
    assert!(
        fail.ends_with(" from=127.0.0.1"),
        "FAIL line without the peer: {fail:?}"
    );
    // Each connection connects anew: once the upstream is there, it is reached.
    serve(
        TcpListener::bind(v4(down)).expect("bind the upstream port"),
        count_then_reply,
    );
    assert_eq!(request(port, b"abc"), b"3");
}

#[test]
fn redirect_to_a_host_name() {
    // Where `localhost` may name ::1 too, the upstream answers there as well.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind upstream");
    let up = listener.local_addr().unwrap().port();
    if let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, up))) {
        serve(v6, count_then_reply);
    }
    serve(listener, count_then_reply);
    let (_daemon, port) = start_redirect(&format!("localhost {up}"), "");
    assert_eq!(request(port, b"abc"), b"3");
}

#[test]
fn idle_timeout_closes_a_quiet_relayed_connection() {
    let up = upstream(echo);
    let (_daemon, port) = start_redirect(&format!("127.0.0.1 {up}"), "idle_timeout = 1");
    let mut stream = tcp_connect(v4(port));
    // Traffic every 300 ms for longer than the timeout keeps the connection open.
    let mut last = Instant::now();
    for i in 0..5 {
        if i > 0 {
            thread::sleep(Duration::from_millis(300));
        }
        stream.write_all(b"ping\n").unwrap();
        let mut reply = [0u8; 5];
        stream
            .read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("ping {i} after {:?}: {e}", last.elapsed()));
        assert_eq!(&reply, b"ping\n");
        last = Instant::now();
    }
    // Then silence: the daemon closes it about a second later.
    assert_eq!(read_to_eof(&mut stream), b"");
    // `last` is taken when the echo reached the client, a little after the daemon's
    // last activity: the lower bound leaves room for that.
    let idle = last.elapsed();
    assert!(
        idle >= Duration::from_millis(700) && idle < Duration::from_secs(3),
        "closed after {idle:?} of silence, want about 1 s"
    );
}
