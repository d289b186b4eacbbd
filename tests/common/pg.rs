//! A throwaway PostgreSQL 15 cluster for tests: initdb in a temporary directory (as the
//! `postgres` user when the tests run as root, since initdb refuses root), a free loopback port,
//! `shared_preload_libraries = 'pg_stat_statements'`, and `pg_ctl stop` in Drop, so the cluster
//! stops even when the test fails. Nothing outside the temporary directory is touched.
//!
//! [`Pg::start_tls`] turns TLS on with a certificate made in the test ([`TestCa`]: a CA and a
//! server certificate for the names asked for), optionally accepting TCP sessions only over
//! TLS (`hostssl` in pg_hba.conf).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "oncall-test-pw";

pub struct Pg {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    running: bool,
}

/// A certificate authority made in the test, and a server certificate it signed.
pub struct TestCa {
    /// The CA certificate (PEM), as a client's `sslrootcert`.
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestCa {
    /// A CA and a server certificate naming `names` (DNS names, or IP addresses).
    pub fn new(names: &[&str]) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "oncall test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("db"));
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }
}

fn bin_dir() -> PathBuf {
    std::env::var_os("ONCALL_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Pg {
    /// Whether PostgreSQL 15 is installed where the tests expect it.
    pub fn available() -> bool {
        bin_dir().join("initdb").exists()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if super::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .env("PGPASSWORD", PASSWORD)
            .env_remove("PGDATA");
        cmd.output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts a cluster with `max_connections` and the `oncall` (pg_monitor) role and `app` db.
    pub fn start(max_connections: u32) -> Pg {
        Pg::start_with(max_connections, None, false)
    }

    /// Starts a cluster with `ssl = on` and the server certificate of `ca`; with `ssl_only`,
    /// pg_hba.conf accepts TCP sessions only over TLS (`hostssl`). The files are the
    /// `postgres` user's, the key mode 0600.
    pub fn start_tls(ca: &TestCa, ssl_only: bool) -> Pg {
        Pg::start_with(50, Some(ca), ssl_only)
    }

    /// A file written into the cluster's temporary directory (readable by the `postgres`
    /// user): a CA certificate for `sslrootcert`, a SQL file for psql.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    fn start_with(max_connections: u32, tls: Option<&TestCa>, ssl_only: bool) -> Pg {
        let dir = tempfile::Builder::new()
            .prefix("oncall-pg")
            .tempdir()
            .expect("tempdir");
        if super::is_root() {
            let st = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success());
        }
        let mut pg = Pg {
            dir,
            port: free_port(),
            bin: bin_dir(),
            running: false,
        };
        let pwfile = pg.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if super::is_root() {
            let _ = Command::new("chown").arg("postgres:").arg(&pwfile).status();
        }
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-N",
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nshared_preload_libraries = 'pg_stat_statements'\nmax_connections = {max_connections}\nsuperuser_reserved_connections = 3\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            pg.port,
            pg.dir.path().display()
        );
        let conf_path = Path::new(&data).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        text.push_str(&conf);
        if let Some(ca) = tls {
            use std::os::unix::fs::PermissionsExt;
            let cert = Path::new(&data).join("server.crt");
            let key = Path::new(&data).join("server.key");
            std::fs::write(&cert, &ca.server_cert_pem).expect("server.crt");
            std::fs::write(&key, &ca.server_key_pem).expect("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            if super::is_root() {
                let st = Command::new("chown")
                    .arg("postgres:")
                    .arg(&cert)
                    .arg(&key)
                    .status()
                    .expect("chown");
                assert!(st.success());
            }
            text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        if ssl_only {
            let hba_path = Path::new(&data).join("pg_hba.conf");
            let hba = std::fs::read_to_string(&hba_path).expect("pg_hba.conf");
            let hba: String = hba
                .lines()
                .map(|l| match l.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&hba_path, hba).expect("write pg_hba.conf");
        }
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
        let log = pg.dir.path().join("log").display().to_string();
        let out = pg.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "30", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        pg.running = true;
        pg.sql("postgres", &format!("CREATE ROLE oncall LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor, pg_read_all_data; CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"));
        pg.sql("postgres", "CREATE DATABASE app OWNER app");
        pg.sql("postgres", "CREATE DATABASE noext");
        pg.sql("app", "CREATE EXTENSION pg_stat_statements");
        pg
    }

    /// Runs SQL as the superuser over the socket; panics on failure.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let sock = self.dir.path().display().to_string();
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h",
                &sock,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a shell command line as the `postgres` user (when the tests run as root) in `cwd`,
    /// with PostgreSQL's client tools on PATH, PGHOST, PGPORT and PGUSER pointing at this
    /// cluster as the superuser, and `env` added; returns (success, stdout + stderr).
    pub fn shell(&self, line: &str, cwd: &Path, env: &[(&str, &str)]) -> (bool, String) {
        let mut vars: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("PGHOST".into(), self.dir.path().display().to_string()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), "postgres".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cmd = if super::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            c.args(vars.iter().map(|(k, v)| format!("{k}={v}")));
            c.args(["sh", "-c", line]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", line]).envs(vars);
            c
        };
        let out = cmd
            .current_dir(cwd)
            .env_remove("PGDATA")
            .output()
            .unwrap_or_else(|e| panic!("run {line}: {e}"));
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// A URL for a role on a database over TCP.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Connects with tokio-postgres as a given application.
    pub async fn connect(&self, user: &str, db: &str, application: &str) -> tokio_postgres::Client {
        let url = format!("{}?application_name={application}", self.url(user, db));
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Stops the server now (the "database goes away" fault).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            self.running = false;
        }
    }

    /// The environment that points oncall at the `app` database as the read-only role.
    pub fn oncall_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "ONCALL_POSTGRES__APP__URL".into(),
                self.url("oncall", "app"),
            ),
            (
                "ONCALL_POSTGRES__APP__ACTION_URL".into(),
                self.url("postgres", "app"),
            ),
            ("ONCALL_HOST__WINDOW_MS".into(), "300".into()),
        ]
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
