//! Dialled connections: connect with a timeout, then TCP_NODELAY.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Connects to `addr` within `timeout`. The error says where and why, ready
/// for a log line or an error response.
pub async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("{addr}: {e}")),
        Err(_) => return Err(format!("{addr}: timed out after {timeout:?}")),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
