//! A private PostgreSQL primary with hot standbys on loopback ports, for tests and benchmarks
//! (feature `cluster`).
//!
//! [`LocalCluster::start`] runs `initdb` for a primary in a temporary directory, starts it on a
//! free port of 127.0.0.1, then makes each standby with `pg_basebackup -R` (streaming
//! replication, `hot_standby_feedback` on) and starts it on a port of its own. Dropping the
//! cluster stops every server and removes the directory. The server binaries are found through
//! `EVENT_STORE_PG_BIN`, then `pg_config --bindir`, then `/usr/lib/postgresql/*/bin` (newest
//! first); [`LocalCluster::start`] says which is missing when none is there. Run as root, the
//! servers run as the `postgres` user (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use event_store::{Error, Result};

const BACKEND: &str = "postgres cluster";

/// A running primary and its hot standbys, stopped and deleted on drop.
#[derive(Debug)]
pub struct LocalCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    run_as: Option<String>,
    primary: Server,
    standbys: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    data: PathBuf,
    port: u16,
}

impl Server {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn failed(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::backend(BACKEND, format!("{what}: {detail}"))
}

/// The directory of the server binaries, if this machine has them.
pub fn server_binaries() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_basebackup").is_file();
    if let Some(dir) = std::env::var_os("EVENT_STORE_PG_BIN").map(PathBuf::from) {
        return has(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&dir) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let dir = e.path().join("bin");
            has(&dir).then_some((version, dir))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir)
}

/// A port of 127.0.0.1 nothing listens on now.
fn free_port() -> Result<u16> {
    let socket =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| failed("finding a free port", e))?;
    let port = socket
        .local_addr()
        .map_err(|e| failed("finding a free port", e))?
        .port();
    Ok(port)
}

impl LocalCluster {
    /// Starts a primary and `standbys` hot standbys streaming from it, and waits until every
    /// standby accepts reads.
    pub fn start(standbys: usize) -> Result<Self> {
        let bin = server_binaries().ok_or_else(|| {
            failed(
                "no PostgreSQL server binaries",
                "set EVENT_STORE_PG_BIN to the directory holding initdb and pg_basebackup",
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("event-store-cluster-")
            .tempdir()
            .map_err(|e| failed("making the cluster's directory", e))?;
        // PostgreSQL refuses to run as root: hand the directory to `postgres` and run as it.
        let run_as = is_root().then(|| "postgres".to_owned());
        let mut cluster = Self {
            bin,
            primary: Server {
                data: dir.path().join("primary"),
                port: free_port()?,
            },
            dir,
            run_as,
            standbys: Vec::new(),
        };
        cluster.own(cluster.dir.path())?;
        cluster.init_primary()?;
        for i in 0..standbys {
            cluster.add_standby(i)?;
        }
        Ok(cluster)
    }

    /// The primary's URL (database `postgres`, user `postgres`, trust).
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// The URL of standby `i`.
    pub fn standby_url(&self, i: usize) -> String {
        self.standbys[i].url()
    }

    /// The URLs of every standby.
    pub fn standby_urls(&self) -> Vec<String> {
        self.standbys.iter().map(Server::url).collect()
    }

    /// Stops standby `i` (fast shutdown: its sessions are ended).
    pub fn stop_standby(&self, i: usize) -> Result<()> {
        self.pg_ctl(&self.standbys[i], &["-m", "fast", "stop"])
    }

    /// Starts standby `i` again and waits until it accepts reads.
    pub fn start_standby(&self, i: usize) -> Result<()> {
        self.start_server(&self.standbys[i])?;
        self.wait_ready(&self.standbys[i])
    }

    /// The CPU time each server has used so far, the primary first, then the standbys in
    /// order: its postmaster, the processes it started that have exited, and those still
    /// running (Linux: read from `/proc`).
    pub fn cpu_times(&self) -> Result<Vec<Duration>> {
        let tick = clock_tick();
        let procs = processes()?;
        [&self.primary]
            .into_iter()
            .chain(&self.standbys)
            .map(|server| {
                let pid_file = std::fs::read_to_string(server.data.join("postmaster.pid"))
                    .map_err(|e| failed("reading postmaster.pid", e))?;
                let pid: u32 = pid_file
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .ok_or_else(|| failed("reading postmaster.pid", "no process id"))?;
                let ticks: u64 = procs
                    .iter()
                    .filter(|p| p.pid == pid || p.ppid == pid)
                    .map(|p| p.ticks + if p.pid == pid { p.children_ticks } else { 0 })
                    .sum();
                Ok(Duration::from_secs_f64(ticks as f64 / tick))
            })
            .collect()
    }

    fn own(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            Self::run(Command::new("chown").arg("-R").arg(user).arg(path))?;
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(command: &mut Command) -> Result<Output> {
        let what = format!("{command:?}");
        let out = command.output().map_err(|e| failed(&what, e))?;
        if !out.status.success() {
            return Err(failed(
                &what,
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        Ok(out)
    }

    fn init_primary(&self) -> Result<()> {
        Self::run(
            self.command("initdb")
                .arg("-D")
                .arg(&self.primary.data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .arg("--locale=C"),
        )?;
        let conf = format!(
            "\n# event-store LocalCluster\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nwal_level = replica\nmax_wal_senders = 16\n\
             max_replication_slots = 16\nhot_standby = on\nhot_standby_feedback = on\n\
             max_connections = 200\nfsync = off\nfull_page_writes = off\n\
             wal_keep_size = '512MB'\nlog_min_messages = warning\n",
            self.primary.port,
            self.dir.path().display()
        );
        append(&self.primary.data.join("postgresql.conf"), &conf)?;
        self.start_server(&self.primary)?;
        self.wait_ready(&self.primary)
    }

    fn add_standby(&mut self, i: usize) -> Result<()> {
        let standby = Server {
            data: self.dir.path().join(format!("standby{i}")),
            port: free_port()?,
        };
        Self::run(
            self.command("pg_basebackup")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-R"])
                .arg("-p")
                .arg(self.primary.port.to_string())
                .arg("-D")
                .arg(&standby.data),
        )?;
        append(
            &standby.data.join("postgresql.auto.conf"),
            &format!("port = {}\n", standby.port),
        )?;
        self.own(&standby.data)?;
        self.start_server(&standby)?;
        self.wait_ready(&standby)?;
        self.standbys.push(standby);
        Ok(())
    }

    fn start_server(&self, server: &Server) -> Result<()> {
        let log = server.data.with_extension("log");
        self.pg_ctl(
            server,
            &["-w", "-t", "60", "-l", &log.to_string_lossy(), "start"],
        )
    }

    fn pg_ctl(&self, server: &Server, args: &[&str]) -> Result<()> {
        Self::run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(&server.data)
                .args(args),
        )
        .map(drop)
    }

    /// Waits until the server answers `pg_isready` (a standby once it is consistent).
    fn wait_ready(&self, server: &Server) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-q", "-p"])
                .arg(server.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failed(
                    "waiting for a server",
                    format!("port {} not ready in 60 s", server.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for server in self.standbys.iter().chain([&self.primary]) {
            let _ = self.pg_ctl(server, &["-m", "immediate", "stop"]);
        }
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| failed(&format!("opening {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed(&format!("writing {}", path.display()), e))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// One process of `/proc`: its parent, and its CPU ticks (own, and of its waited-for children).
struct Proc {
    pid: u32,
    ppid: u32,
    ticks: u64,
    children_ticks: u64,
}

fn processes() -> Result<Vec<Proc>> {
    let dir = std::fs::read_dir("/proc").map_err(|e| failed("reading /proc", e))?;
    Ok(dir
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses: fields start after the last `)`.
            let rest = &stat[stat.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the name: state (0), ppid (1), …, utime (11), stime (12), cutime (13), cstime (14).
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some(Proc {
                pid,
                ppid: f.get(1)?.parse().ok()?,
                ticks: n(11)? + n(12)?,
                children_ticks: n(13)? + n(14)?,
            })
        })
        .collect())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPU time this process has used so far (Linux: `/proc/self/stat`).
pub fn own_cpu_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| failed("reading /proc/self/stat", e))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| failed("reading /proc/self/stat", "no command name"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(Duration::from_secs_f64(
        (n(11) + n(12)) as f64 / clock_tick(),
    ))
}
