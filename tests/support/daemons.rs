//! Third-party proxies and servers on 127.0.0.1 for the proxy and TLS
//! tests: tinyproxy (HTTP CONNECT, Basic auth), microsocks (SOCKS5 with a
//! password), nginx (TLS termination, mutual TLS, redirects, and with its
//! stream module TLS in front of tinyproxy: an https:// proxy). Installed
//! by `.ci/proxy-setup`, which the first daemon runs. Each daemon is killed
//! when dropped; certificates come from rcgen.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

/// Runs `.ci/proxy-setup` once per test binary.
fn setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        let status = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/proxy-setup"))
            .status()
            .expect("bash runs");
        assert!(
            status.success(),
            ".ci/proxy-setup could not install tinyproxy, microsocks and nginx"
        );
    });
}

/// A free port on 127.0.0.1 (free when asked; the daemon binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tether-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon listening on `port`; killed on drop.
pub struct Daemon {
    pub port: u16,
    child: Child,
    pub name: &'static str,
    _dir: TempDir,
}

impl Daemon {
    fn spawn(name: &'static str, port: u16, command: &mut Command, dir: TempDir) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let daemon = Daemon {
            port,
            child,
            name,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tinyproxy on `port`, with Basic auth when `auth` is given.
pub fn tinyproxy_at(port: u16, auth: Option<(&str, &str)>) -> Daemon {
    setup();
    let dir = TempDir::new("tinyproxy");
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\nLogLevel Critical\n"
    );
    if let Some((user, pass)) = auth {
        conf.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let path = dir.write("tinyproxy.conf", &conf);
    Daemon::spawn(
        "tinyproxy",
        port,
        Command::new("tinyproxy").arg("-d").arg("-c").arg(path),
        dir,
    )
}

pub fn tinyproxy(auth: Option<(&str, &str)>) -> Daemon {
    tinyproxy_at(free_port(), auth)
}

/// microsocks (SOCKS5), with a username and password when `auth` is given.
pub fn microsocks(auth: Option<(&str, &str)>) -> Daemon {
    setup();
    let port = free_port();
    let mut command = Command::new("microsocks");
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, pass)) = auth {
        command.args(["-u", user, "-P", pass]);
    }
    Daemon::spawn("microsocks", port, &mut command, TempDir::new("microsocks"))
}

/// nginx with `http` (the body of its http block) and `stream` (of its
/// stream block, if any); `{dir}` in either is replaced by its directory.
pub fn nginx(port: u16, http: &str, stream: Option<&str>, files: &[(&str, &str)]) -> Daemon {
    setup();
    let dir = TempDir::new("nginx");
    for (name, text) in files {
        dir.write(name, text);
    }
    let d = dir.0.display().to_string();
    let mut conf = String::new();
    if stream.is_some() {
        conf.push_str("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n");
    }
    conf.push_str(&format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{}\n}}\n",
        http.replace("{dir}", &d)
    ));
    if let Some(stream) = stream {
        conf.push_str(&format!("stream {{\n{}\n}}\n", stream.replace("{dir}", &d)));
    }
    let path = dir.write("nginx.conf", &conf);
    let binary = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    Daemon::spawn(
        "nginx",
        port,
        Command::new(binary)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(path),
        dir,
    )
}

/// PEM material for one test: a CA the client is told about, a server
/// certificate for 127.0.0.1 and localhost it signed, one for another
/// name, one from a CA nobody trusts, and a client certificate from a
/// client CA.
pub struct Pems {
    pub ca: String,
    pub server_chain: String,
    pub server_key: String,
    pub wrong_name_chain: String,
    pub wrong_name_key: String,
    pub untrusted_chain: String,
    pub untrusted_key: String,
    pub expired_chain: String,
    pub expired_key: String,
    pub client_ca: String,
    pub client_chain: String,
    pub client_key: String,
}

struct Ca {
    pem: String,
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        cert,
        key,
    }
}

fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    leaf_with(ca, names, |_| {})
}

fn leaf_with(
    ca: &Ca,
    names: &[&str],
    adjust: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    adjust(&mut params);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (format!("{}{}", cert.pem(), ca.pem), key.serialize_pem())
}

pub fn pems() -> Pems {
    let trusted = ca("tether test CA");
    let stranger = ca("a CA nobody trusts");
    let clients = ca("tether client CA");
    let (server_chain, server_key) = leaf(&trusted, &["127.0.0.1", "localhost"]);
    let (wrong_name_chain, wrong_name_key) = leaf(&trusted, &["other.test"]);
    let (untrusted_chain, untrusted_key) = leaf(&stranger, &["127.0.0.1", "localhost"]);
    let (client_chain, client_key) = leaf(&clients, &["client.test"]);
    let (expired_chain, expired_key) = leaf_with(&trusted, &["127.0.0.1", "localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    Pems {
        ca: trusted.pem.clone(),
        server_chain,
        server_key,
        wrong_name_chain,
        wrong_name_key,
        untrusted_chain,
        untrusted_key,
        expired_chain,
        expired_key,
        client_ca: clients.pem.clone(),
        client_chain,
        client_key,
    }
}

/// nginx terminating TLS for the WebSocket server at `backend` on a free
/// port, with the certificate chain and key `cert`; `extra` goes in its
/// server block (client certificates are checked against the client CA
/// when it says `ssl_verify_client on;`).
pub fn tls_front(
    backend: std::net::SocketAddr,
    pems: &Pems,
    cert: (&str, &str),
    extra: &str,
) -> Daemon {
    let port = free_port();
    let http = format!(
        "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {{dir}}/server.pem;\n\
         ssl_certificate_key {{dir}}/server.key;\n ssl_client_certificate {{dir}}/client-ca.pem;\n{extra}\n\
         location / {{\n  proxy_pass http://{backend};\n  proxy_http_version 1.1;\n\
         proxy_set_header Upgrade $http_upgrade;\n  proxy_set_header Connection upgrade;\n\
         proxy_read_timeout 60s;\n }}\n}}"
    );
    nginx(
        port,
        &http,
        None,
        &[
            ("server.pem", cert.0),
            ("server.key", cert.1),
            ("client-ca.pem", &pems.client_ca),
        ],
    )
}

/// An https:// proxy: nginx's stream module speaks TLS to the client (with
/// the trusted server certificate) and passes the bytes to `inner`.
pub fn https_proxy(inner: &Daemon, pems: &Pems) -> Daemon {
    let port = free_port();
    let stream = format!(
        "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {{dir}}/server.pem;\n\
         ssl_certificate_key {{dir}}/server.key;\n proxy_pass {};\n}}",
        inner.addr()
    );
    nginx(
        port,
        "",
        Some(&stream),
        &[
            ("server.pem", &pems.server_chain),
            ("server.key", &pems.server_key),
        ],
    )
}
