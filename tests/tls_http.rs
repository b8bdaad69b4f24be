//! TLS on the HTTP paths, with clients and servers we did not write: curl
//! over HTTP/1.1 and HTTP/2 (ALPN) to a TLS listener, grpcio with SSL
//! channel credentials through an `Auto` listener, and nginx as a TLS
//! upstream that requires a client certificate.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::http::{proxy_config, HttpUpstream};
use support::peers::{grpc_client, grpc_server, Peer};
use support::tls::*;
use support::{free_port, wait_for_log, Proxy};

fn curl(args: &[&str]) -> (bool, String) {
    let out =
        Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).stdin(Stdio::null()).output().expect("curl");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

// Multi-threaded: curl blocks a thread while the in-process upstream serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_with_http1_and_http2() {
    let pki = Pki::new("curl");
    let leaf = pki.leaf("server", &LeafSpec { dns: &["web.example"], ..Default::default() });
    let up = HttpUpstream::start("plain-up", false).await;
    let port = free_port();
    let mut cfg = proxy_config(port, "Auto", "Http1", &[up.addr]);
    let mut ctx = server_context(&leaf, None);
    ctx["alpn"] = json!("h2,http/1.1");
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = ctx;
    let access = pki.path("access.log");
    cfg["servers"][0]["listeners"][0]["access_logs"] = json!([{
        "log_path": access.to_str().unwrap(),
        "log_format": "%protocol% %downstream_tls_version% %requested_server_name% %response_code%"
    }]);
    let _p = Proxy::start(&cfg, 1);
    let ca = pki.ca_path.to_str().unwrap();
    let url = format!("https://127.0.0.1:{port}/hello");
    let (ok, out) = curl(&["--cacert", ca, "--http1.1", "-w", " %{http_version}", &url]);
    assert!(ok && out.ends_with(" 1.1") && out.contains("plain-up"), "{out}");
    let (ok, out) = curl(&["--cacert", ca, "--http2", "-w", " %{http_version}", &url]);
    assert!(ok && out.ends_with(" 2") && out.contains("plain-up"), "{out}");
    // By name, with SNI.
    let (ok, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &format!("web.example:{port}:127.0.0.1"),
        &format!("https://web.example:{port}/x"),
    ]);
    assert!(ok && out.contains("plain-up"), "{out}");
    // Pipelined over TLS (the pass-through): 20 requests in one write, 20 answers.
    let script = format!(
        "import socket,ssl\nc=ssl.create_default_context(cafile='{ca}');c.check_hostname=False\n\
         s=c.wrap_socket(socket.create_connection(('127.0.0.1',{port})))\ns.settimeout(10)\n\
         s.sendall(b'GET /p HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'*20)\nd=b''\n\
         while d.count(b'HTTP/1.1 200')<20:\n  b=s.recv(65536)\n  assert b\n  d+=b\nprint('ok', d.count(b'HTTP/1.1 200'))\n"
    );
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim() == "ok 20", "{text}{}", String::from_utf8_lossy(&out.stderr));
    // Every access-log line says what the handshake gave, the
    // pass-through's (curl's HTTP/1.1 and the 20 pipelined) as the HTTP/2
    // server's; only the request by name sent SNI.
    let passed = |text: &str| text.lines().filter(|l| *l == "http1 TLSv1.3 - 200").count();
    let mut logged = wait_for_log(&access, "web.example");
    for _ in 0..50 {
        if passed(&logged) >= 21 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        logged = std::fs::read_to_string(&access).unwrap_or_default();
    }
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(passed(&logged), 21, "{logged}");
    assert!(lines.iter().all(|l| l.contains(" TLSv1.3 ")), "{logged}");
    assert!(lines.iter().any(|l| l.ends_with(" TLSv1.3 web.example 200")), "{logged}");
    // Without the CA, curl refuses ferrymesh's certificate.
    let (ok, _) = curl(&[&url]);
    assert!(!ok);
}

#[test]
fn grpcio_with_ssl_credentials_through_an_auto_listener() {
    let pki = Pki::new("grpc");
    let leaf = pki.leaf("server", &LeafSpec::default());
    let (_server, addr) = grpc_server("tls-alpha");
    let port = free_port();
    let mut cfg = proxy_config(port, "Auto", "Auto", &[addr]);
    let mut ctx = server_context(&leaf, None);
    ctx["alpn"] = json!("h2,http/1.1");
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = ctx;
    let _p = Proxy::start(&cfg, 1);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (ok, out) = grpc_client(target, &["--ca", pki.ca_path.to_str().unwrap(), "--expect-server", "tls-alpha"]);
    assert!(ok, "{out}");
}

/// nginx serving TLS on `port` and requiring a client certificate signed by
/// `ca`; it answers 200 with the client certificate's subject.
fn nginx_mtls(pki: &Pki, port: u16, leaf: &Leaf) -> Peer {
    let dir = pki.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_client_certificate {ca}; ssl_verify_client on;
    location / {{ return 200 \"nginx-mtls $ssl_client_s_dn\\n\"; }}
  }}
}}
",
        d = dir.display(),
        cert = leaf.cert.display(),
        key = leaf.key.display(),
        ca = pki.ca_path.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx").args(["-p", dir.to_str().unwrap(), "-c"]).arg(&path).spawn().expect("nginx");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nginx did not start: {:?}",
            std::fs::read_to_string(dir.join("error.log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Peer(child)
}

#[tokio::test]
async fn nginx_as_a_tls_upstream_that_requires_a_client_certificate() {
    let pki = Pki::new("nginx");
    let server = pki.leaf("nginx", &LeafSpec { dns: &["upstream.example"], ..Default::default() });
    let client = pki.leaf(
        "client",
        &LeafSpec { cn: "ferrymesh-client", uris: &["spiffe://mesh.test/sa/edge"], ..Default::default() },
    );
    let nginx_port = free_port();
    let _nginx = nginx_mtls(&pki, nginx_port, &server);
    let up: SocketAddr = format!("127.0.0.1:{nginx_port}").parse().unwrap();

    // With the client certificate: through.
    let port = free_port();
    let mut cfg = proxy_config(port, "Http1", "Http1", &[up]);
    cfg["cluster_manager"]["clusters"][0]["tls_context"] =
        client_context(&pki.ca_path, Some(&client), "upstream.example");
    let p = Proxy::start(&cfg, 1);
    for _ in 0..3 {
        let (ok, out) = curl(&[&format!("http://127.0.0.1:{port}/")]);
        assert!(ok && out.contains("nginx-mtls") && out.contains("CN=ferrymesh-client"), "{out}");
    }
    drop(p);

    // Without it, nginx refuses the request (400: no required SSL certificate).
    let port = free_port();
    let mut cfg = proxy_config(port, "Http1", "Http1", &[up]);
    cfg["cluster_manager"]["clusters"][0]["tls_context"] = client_context(&pki.ca_path, None, "upstream.example");
    let _p = Proxy::start(&cfg, 1);
    let (_, out) = curl(&["-w", "%{http_code}", &format!("http://127.0.0.1:{port}/")]);
    assert!(out.ends_with("400") && !out.contains("nginx-mtls"), "{out}");
}
