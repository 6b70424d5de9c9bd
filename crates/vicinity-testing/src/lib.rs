//! Test infrastructure: private, disposable backing services for tests and benchmarks.
//!
//! - [`redis`]: a `redis-server` process of one's own ([`redis::RedisServer`]) or a whole
//!   Redis Cluster ([`redis::RedisCluster`]) on free ports, so tests can kill, pause and
//!   restart them and never touch a shared instance.
//! - [`sentinel`]: a Redis primary and its replica behind three Redis Sentinels
//!   ([`sentinel::RedisSentinels`]), so a test can kill the primary and watch the failover.
//! - [`draws`]: seeded draws and the geometry test data is made with, shared with the load
//!   harness's workloads.
//! - [`proxy`]: a TCP proxy that injects network faults (latency, a stall, a half-open path,
//!   a reset) between a service and its store ([`proxy::FaultProxy`]).
//!
//! Below is what such services share: free ports, and child processes that die with their
//! owner and cannot hang a test.

pub mod draws;
pub mod proxy;
pub mod redis;
pub mod sentinel;

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a polling loop sleeps between two looks.
const POLL: Duration = Duration::from_millis(10);

/// Ports the OS reports free on 127.0.0.1, all distinct. They are free only until someone
/// else binds them, so callers retry when a process fails to bind.
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<_>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A long-running child process of one's own, with a scratch directory that receives its
/// output in `stdio.log`. Dropping it kills the process (paused or not), reaps it and removes
/// the directory, also when a test panics.
#[derive(Debug)]
struct Process {
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Process {
    /// Nothing running yet, and a new empty directory under the system temp dir, unique to
    /// this process, this call and `tag`.
    fn new(tag: &str) -> io::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("vicinity-{}-{n}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        fs::create_dir_all(&dir)?;
        let (child, paused) = (None, false);
        Ok(Process { dir, child, paused })
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills what runs, then spawns `cmd` with its output appended to `stdio.log`.
    fn spawn(&mut self, mut cmd: Command) -> io::Result<()> {
        self.kill()?;
        let mut log = OpenOptions::new();
        let log = log
            .create(true)
            .append(true)
            .open(self.dir.join("stdio.log"))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// The exit status once the process has exited by itself.
    fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.as_mut().map_or(Ok(None), Child::try_wait)
    }

    /// Whether the process is alive; a paused one is.
    fn is_running(&mut self) -> bool {
        self.child.is_some() && matches!(self.exited(), Ok(None))
    }

    /// Spawned, neither killed nor paused; no system call.
    fn is_live(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap. A no-op when nothing runs.
    fn kill(&mut self) -> io::Result<()> {
        self.paused = false;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.kill()?;
        child.wait().map(drop)
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    fn pause(&mut self) -> io::Result<()> {
        self.signal("-STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    fn resume(&mut self) -> io::Result<()> {
        self.signal("-CONT")?;
        self.paused = false;
        Ok(())
    }

    fn signal(&self, signal: &str) -> io::Result<()> {
        let not_running = || io::Error::new(io::ErrorKind::NotFound, "process not running");
        let pid = self.pid().ok_or_else(not_running)?.to_string();
        run(
            Command::new("kill").args([signal, &pid]),
            Duration::from_secs(5),
        )
        .map(drop)
    }

    /// The last `count` lines of `stdio.log` followed by those of `log` in the directory.
    fn log_tail(&self, log: &str, count: usize) -> String {
        let read = |name| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let logs = read("stdio.log") + &read(log);
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(count)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` to completion with stdin closed and returns its stdout. Fails when it exits
/// unsuccessfully (with its output in the error) or outlives `timeout` (it is then killed).
fn run(cmd: &mut Command, timeout: Duration) -> io::Result<String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let status = poll_until(timeout, || child.try_wait()).inspect_err(|_| {
        let _ = child.kill();
        let _ = child.wait();
    });
    let join = |pipe: JoinHandle<String>| pipe.join().unwrap_or_default();
    let (status, stdout, stderr) = (status?, join(stdout), join(stderr));
    let failed = || format!("{cmd:?}: {status}\n{stdout}{stderr}");
    match status.success() {
        true => Ok(stdout),
        false => Err(io::Error::other(failed())),
    }
}

/// Drains a pipe on its own thread so a chatty child never blocks on a full pipe.
fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Calls `look` every few milliseconds until it finds something; fails with `TimedOut` when
/// `timeout` passes first.
fn poll_until<T>(
    timeout: Duration,
    mut look: impl FnMut() -> io::Result<Option<T>>,
) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = look()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            let msg = format!("not ready within {timeout:?}");
            return Err(io::Error::new(io::ErrorKind::TimedOut, msg));
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Process {
        let mut process = Process::new("sleeper").unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        process.spawn(cmd).unwrap();
        process
    }

    fn alive(pid: u32) -> bool {
        run(
            Command::new("kill").args(["-0", &pid.to_string()]),
            POLL * 100,
        )
        .is_ok()
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(4).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
    }

    #[test]
    fn a_command_that_outlives_its_timeout_is_killed() {
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("30"), POLL * 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_failing_command_is_an_error_carrying_its_output() {
        let err = run(Command::new("ls").arg("/no/such/dir"), POLL * 500).unwrap_err();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
    }

    #[test]
    fn a_killed_process_is_not_running() {
        let mut process = sleeper();
        let pid = process.pid().unwrap();
        process.kill().unwrap();
        assert!(!process.is_running() && !alive(pid));
    }

    #[test]
    fn dropping_a_paused_process_ends_it_and_removes_its_dir() {
        let mut process = sleeper();
        process.pause().unwrap();
        assert!(process.is_running() && !process.is_live());
        let (pid, dir) = (process.pid().unwrap(), process.dir.clone());
        drop(process);
        assert!(!alive(pid));
        assert!(!dir.exists());
    }
}
