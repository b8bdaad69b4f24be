//! Peers we did not write, run as child processes: started, waited for
//! their `READY <port>` line, and stopped by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process stopped by PID (SIGTERM, then reaped) when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for its `READY <port> ...` line. A peer that
/// says anything else is stopped before the panic.
pub fn start_ready(cmd: &mut Command) -> (Peer, u16) {
    let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let peer = Peer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port =
        line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{cmd:?} said {line:?}"));
    (peer, port)
}

/// A peer server on 127.0.0.1, stopped by PID when dropped.
pub struct Server {
    _peer: Peer,
    port: u16,
}

impl Server {
    /// Starts `cmd` and waits until it says `READY <port>`.
    pub fn start(cmd: &mut Command) -> Server {
        let (peer, port) = start_ready(cmd);
        Server { _peer: peer, port }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The grpcio echo server of tests/grpc, named `name`.
pub fn grpc_server(name: &str) -> (Peer, SocketAddr) {
    let (p, port) = start_ready(
        Command::new("python3").arg(root().join("tests/grpc/server.py")).args(["--port", "0", "--name", name]),
    );
    (p, format!("127.0.0.1:{port}").parse().unwrap())
}

/// One run of the grpcio client of tests/grpc: (succeeded, its output).
pub fn grpc_client(target: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(root().join("tests/grpc/client.py"))
        .arg(target.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
