//! The embedded default database: a project-local PostgreSQL cluster.
//!
//! When `DATABASE_URL` is unset, [`database_url`] starts (or reuses) a cluster of the
//! installed PostgreSQL binaries under `target/strata-pg/` (override with
//! `STRATA_PG_DIR`): `initdb` on first use, its own port (chosen once from the
//! directory's path and the free ports, kept in `port`; override with `STRATA_PG_PORT`),
//! its socket and its log (`postgres.log`) inside the directory, trust authentication on
//! 127.0.0.1 only, and a database `strata`. Run as root, every server command runs as the
//! `postgres` OS user, because PostgreSQL refuses to run as root.
//!
//! Two processes starting it at once get one cluster: the whole check–init–start
//! sequence runs under an exclusive file lock on `<dir>/lock`.
//!
//! **TLS**, off by default: with `STRATA_PG_TLS=1` the cluster also accepts TLS (a
//! self-signed certificate for `localhost` and `127.0.0.1`, made once in the data
//! directory; `ssl = on`, applied by a reload when the cluster already runs) and its
//! URLs say `sslmode=require`. Without it the URLs say `sslmode=disable`, so a client
//! never negotiates TLS by default even on a cluster where an earlier run turned it on.
//!
//! Everything here is blocking (it runs `initdb`, `pg_ctl` and `psql`), so call it
//! before starting an async runtime or from `spawn_blocking`. When the cluster already
//! runs it costs one `pg_ctl status` and one `psql` query (a few milliseconds).

use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The database the embedded cluster serves by default.
pub const DATABASE: &str = "strata";

/// The environment variable that turns TLS on (`1`, `on`, `true`, `require`).
pub const TLS_ENV: &str = "STRATA_PG_TLS";

/// Whether [`TLS_ENV`] asks for TLS.
pub fn tls_requested() -> bool {
    std::env::var(TLS_ENV).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "true" | "yes" | "require"
        )
    })
}

/// Why the embedded cluster could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) were found.
    #[error(
        "no PostgreSQL server binaries found (looked in $STRATA_PG_BINDIR, /usr/lib/postgresql/*/bin, `pg_config --bindir` and $PATH); run scripts/setup-postgres.sh or install PostgreSQL 15+ and pgvector"
    )]
    NoBinaries,
    /// The installed PostgreSQL is older than the project supports.
    #[error("PostgreSQL {found} found in {bindir}; Strata needs PostgreSQL 15 or newer")]
    TooOld {
        /// The major version found.
        found: u32,
        /// Where it was found.
        bindir: String,
    },
    /// A file-system operation on the cluster directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PostgreSQL program exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stdout and stderr), trimmed.
        output: String,
    },
    /// `STRATA_PG_PORT` or the stored port file holds something that is not a port.
    #[error("invalid port {value:?} in {origin}")]
    BadPort {
        /// The offending text.
        value: String,
        /// Where it came from.
        origin: String,
    },
    /// TLS could not be turned on: the certificate could not be made, or the server
    /// kept `ssl` off (its log says why).
    #[error("embedded PostgreSQL TLS: {0}")]
    Tls(String),
    /// No free TCP port was found for the cluster.
    #[error("no free TCP port on 127.0.0.1 between {from} and {to}")]
    NoFreePort {
        /// First port tried.
        from: u16,
        /// Last port tried.
        to: u16,
    },
}

/// A running embedded cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The cluster directory (data, socket, log, lock and port files).
    pub dir: PathBuf,
    /// The PostgreSQL binary directory in use.
    pub bindir: PathBuf,
    /// The TCP port it listens on (127.0.0.1 only).
    pub port: u16,
    /// Whether this call started it (false: it was already running).
    pub started: bool,
    /// Whether its URLs ask for TLS (`sslmode=require`; else `sslmode=disable`).
    pub tls: bool,
}

impl Cluster {
    /// The URL of database `db` on this cluster, with the cluster's `sslmode`.
    pub fn url_for(&self, db: &str) -> String {
        let mode = if self.tls { "require" } else { "disable" };
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode={mode}",
            self.port
        )
    }

    /// The URL of the default database, [`DATABASE`].
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// The shell command that stops this cluster.
    pub fn stop_command(&self) -> String {
        let pg_ctl = self.bindir.join("pg_ctl");
        let base = format!(
            "{} -D {} stop -m fast",
            pg_ctl.display(),
            self.dir.join("data").display()
        );
        if running_as_root() {
            format!("runuser -u postgres -- {base}")
        } else {
            base
        }
    }

    /// Stops the cluster (`pg_ctl stop -m fast`), waiting until it is down.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        let data = self.dir.join("data");
        run(pg_command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["stop", "-m", "fast", "-w"]))
        .map(|_| ())
    }
}

/// The URL to use: `DATABASE_URL` when set and not empty, else the embedded cluster's
/// (started on demand, see the module docs). Prints one line to stderr, once per
/// process, when it uses the embedded cluster.
pub fn database_url() -> Result<String, EmbeddedError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Ok(ensure()?.url()),
    }
}

/// The URL to use: `url` when given and not empty, else [`database_url`]
/// (`DATABASE_URL`, else the embedded cluster). For the `strata` command, the tests
/// and the examples; the library itself only ever connects to the URL it is given.
pub fn resolve_url(url: Option<&str>) -> Result<String, EmbeddedError> {
    match url.filter(|u| !u.trim().is_empty()) {
        Some(u) => Ok(u.to_owned()),
        None => database_url(),
    }
}

/// Starts the embedded cluster, or finds it running, once per process; later calls
/// return the same [`Cluster`]. Prints one line to stderr the first time.
pub fn ensure() -> Result<Cluster, EmbeddedError> {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    if let Some(c) = CLUSTER.get() {
        return Ok(c.clone());
    }
    let cluster = start_or_reuse(&default_dir())?;
    let cluster = CLUSTER.get_or_init(|| cluster).clone();
    eprintln!(
        "strata: embedded PostgreSQL {} at {} — {} — stop it with: {}",
        if cluster.started {
            "started"
        } else {
            "running"
        },
        cluster.dir.display(),
        cluster.url(),
        cluster.stop_command()
    );
    Ok(cluster)
}

/// The cluster directory: `STRATA_PG_DIR`, else `<workspace>/target/strata-pg`.
pub fn default_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STRATA_PG_DIR")
        && !dir.is_empty()
    {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("strata-pg")
}

/// Starts (initialising if needed) or reuses the cluster in `dir`, under the
/// directory's file lock, and makes sure database [`DATABASE`] exists.
///
/// Costs, when already running: one `pg_ctl status` and one `psql` query.
pub fn start_or_reuse(dir: &Path) -> Result<Cluster, EmbeddedError> {
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let dir = dir.canonicalize().map_err(io("resolve directory", dir))?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open lock file", &lock_path))?;
    lock.lock().map_err(io("lock", &lock_path))?;
    let result = start_locked(&dir);
    // Unlocking happens when `lock` is dropped as well; do it explicitly for clarity.
    let _ = File::unlock(&lock);
    result
}

/// The cluster in `dir` if it is running (`pg_ctl status`), without starting it;
/// `None` when it is stopped or was never initialised. One `pg_ctl status`.
pub fn running(dir: &Path) -> Result<Option<Cluster>, EmbeddedError> {
    let dir = &dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        return Ok(None);
    }
    let bindir = find_bindir()?;
    if !pg_ctl_status(&bindir, &data)? {
        return Ok(None);
    }
    let Some(port) = read_port(dir)? else {
        return Ok(None);
    };
    Ok(Some(Cluster {
        dir: dir.to_path_buf(),
        bindir,
        port,
        started: false,
        tls: tls_requested(),
    }))
}

/// Whether a server runs on `data` (`pg_ctl status`).
fn pg_ctl_status(bindir: &Path, data: &Path) -> Result<bool, EmbeddedError> {
    let status = pg_command(bindir, "pg_ctl")
        .arg("-D")
        .arg(data)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io("run pg_ctl status in", data))?;
    Ok(status.success())
}

fn start_locked(dir: &Path) -> Result<Cluster, EmbeddedError> {
    let bindir = find_bindir()?;
    let data = dir.join("data");
    let root = running_as_root();
    if root {
        chown_to_postgres(dir)?;
    }

    if !data.join("PG_VERSION").exists() {
        if data.exists() {
            // A previous initdb died half-way: start over.
            fs::remove_dir_all(&data).map_err(io("remove half-initialised", &data))?;
        }
        run(pg_command(&bindir, "initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "-N",
        ]))?;
        let conf = data.join("postgresql.conf");
        let socket_dir = socket_dir(dir);
        let settings = format!(
            "\n# Strata embedded development cluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 300\nshared_buffers = 256MB\n",
            socket_dir.display()
        );
        let mut text = fs::read_to_string(&conf).map_err(io("read", &conf))?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(io("write", &conf))?;
    }

    let running = pg_ctl_status(&bindir, &data)?;
    let port = if running {
        read_port(dir)?.ok_or_else(|| EmbeddedError::BadPort {
            value: String::new(),
            origin: format!(
                "{} (missing while the cluster runs)",
                dir.join("port").display()
            ),
        })?
    } else {
        let port = choose_port(dir)?;
        let log = dir.join("postgres.log");
        run(pg_command(&bindir, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "-o"])
            .arg(format!("-p {port}"))
            .arg("start"))?;
        port
    };

    let cluster = Cluster {
        dir: dir.to_path_buf(),
        bindir: bindir.clone(),
        port,
        started: !running,
        tls: tls_requested(),
    };
    ensure_database(&cluster, DATABASE)?;
    if cluster.tls {
        enable_tls(&cluster, root)?;
    }
    Ok(cluster)
}

/// Makes the cluster accept TLS: writes a self-signed certificate and its key into the
/// data directory (once; the server's default `ssl_cert_file` and `ssl_key_file`), and
/// turns `ssl` on with `ALTER SYSTEM` and a reload when it is off. One `psql` query
/// when it already is on.
fn enable_tls(cluster: &Cluster, root: bool) -> Result<(), EmbeddedError> {
    let data = cluster.dir.join("data");
    let (cert_path, key_path) = (data.join("server.crt"), data.join("server.key"));
    if !cert_path.exists() || !key_path.exists() {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .map_err(|e| EmbeddedError::Tls(format!("generating the certificate: {e}")))?;
        fs::write(&cert_path, made.cert.pem()).map_err(io("write", &cert_path))?;
        write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
        if root {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cert_path)
                .arg(&key_path))?;
        }
    }
    let on = run(psql(cluster, "postgres").arg("-Atc").arg("SHOW ssl"))?;
    if on.trim() != "on" {
        run(psql(cluster, "postgres")
            .arg("-Atc")
            .arg("ALTER SYSTEM SET ssl = on")
            .arg("-c")
            .arg("SELECT pg_reload_conf()"))?;
        // The reload is asynchronous: wait until the server says so.
        for _ in 0..50 {
            if run(psql(cluster, "postgres").arg("-Atc").arg("SHOW ssl"))?.trim() == "on" {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return Err(EmbeddedError::Tls(format!(
            "ssl is still off 5 s after the reload; see {}",
            cluster.dir.join("postgres.log").display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to a new file readable by its owner only (PostgreSQL refuses a key
/// file others can read).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EmbeddedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))
}

/// Creates database `name` on the cluster unless it exists (one `psql` query, plus
/// `createdb` the first time).
fn ensure_database(cluster: &Cluster, name: &str) -> Result<(), EmbeddedError> {
    let exists = run(psql(cluster, "postgres").arg("-Atc").arg(format!(
        "SELECT 1 FROM pg_database WHERE datname = '{}'",
        name.replace('\'', "''")
    )))?;
    if exists.trim() != "1" {
        run(pg_command(&cluster.bindir, "createdb")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(cluster.port.to_string())
            .arg(name))?;
    }
    Ok(())
}

fn psql(cluster: &Cluster, db: &str) -> Command {
    let mut cmd = Command::new(cluster.bindir.join("psql"));
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
    ])
    .arg(cluster.port.to_string())
    .args(["-d", db]);
    cmd
}

/// The socket directory: the cluster directory unless its path is too long for a
/// Unix socket name (107 bytes on Linux), then the system's temporary directory.
fn socket_dir(dir: &Path) -> PathBuf {
    if dir.as_os_str().len() + ".s.PGSQL.65535".len() + 1 < 100 {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn read_port(dir: &Path) -> Result<Option<u16>, EmbeddedError> {
    let path = dir.join("port");
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u16>()
            .map(Some)
            .map_err(|_| EmbeddedError::BadPort {
                value: text.trim().to_string(),
                origin: path.display().to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EmbeddedError::Io {
            action: "read",
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// The port for a cluster that is about to start: `STRATA_PG_PORT`, else the stored
/// port if it is still free, else the first free port from a start derived from the
/// directory's path (so two checkouts on one machine do not collide). Stored in `port`.
fn choose_port(dir: &Path) -> Result<u16, EmbeddedError> {
    let path = dir.join("port");
    let port = if let Ok(text) = std::env::var("STRATA_PG_PORT") {
        text.trim()
            .parse::<u16>()
            .map_err(|_| EmbeddedError::BadPort {
                value: text.clone(),
                origin: "STRATA_PG_PORT".into(),
            })?
    } else if let Some(p) = read_port(dir)?.filter(|p| port_is_free(*p)) {
        p
    } else {
        let hash = dir
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        let from: u16 = 40000 + (hash % 10000) as u16;
        let to = from + 200;
        (from..to)
            .find(|p| port_is_free(*p))
            .ok_or(EmbeddedError::NoFreePort { from, to })?
    };
    fs::write(&path, format!("{port}\n")).map_err(io("write", &path))?;
    Ok(port)
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Finds the newest PostgreSQL (15+) server binary directory: `STRATA_PG_BINDIR`, else
/// the newest `/usr/lib/postgresql/*/bin`, `pg_config --bindir`, or `$PATH`.
pub fn find_bindir() -> Result<PathBuf, EmbeddedError> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::var("STRATA_PG_BINDIR") {
        candidates.push(PathBuf::from(d));
    } else {
        let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, e.path().join("bin")))
            })
            .collect();
        debian.sort();
        candidates.extend(debian.into_iter().rev().map(|(_, p)| p));
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
    }
    let bindir = candidates
        .into_iter()
        .find(|d| has_server(d))
        .ok_or(EmbeddedError::NoBinaries)?;
    let version = run(Command::new(bindir.join("pg_ctl")).arg("--version"))?;
    // "pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    let major = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    if major < 15 {
        return Err(EmbeddedError::TooOld {
            found: major,
            bindir: bindir.display().to_string(),
        });
    }
    Ok(bindir)
}

/// True when this process runs as root (uid 0), read from `/proc/self`.
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A server command (`initdb`, `pg_ctl`, `createdb`), run as the `postgres` OS user
/// when this process is root.
pub fn pg_command(bindir: &Path, program: &str) -> Command {
    let exe = bindir.join(program);
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(exe);
        cmd
    } else {
        Command::new(exe)
    }
}

fn chown_to_postgres(dir: &Path) -> Result<(), EmbeddedError> {
    if fs::metadata(dir).map(|m| m.uid() != 0).unwrap_or(false) {
        return Ok(());
    }
    run(Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(dir))
    .map(|_| ())
}

/// Runs a command to completion; its stdout on success, a typed error otherwise.
fn run(cmd: &mut Command) -> Result<String, EmbeddedError> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EmbeddedError::Command {
            command: shown.clone(),
            status: "could not start".into(),
            output: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(EmbeddedError::Command {
            command: shown,
            status: out.status.to_string(),
            output: format!("{}{}", stdout, String::from_utf8_lossy(&out.stderr))
                .trim()
                .to_string(),
        })
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let path = path.display().to_string();
    move |source| EmbeddedError::Io {
        action,
        path,
        source,
    }
}
