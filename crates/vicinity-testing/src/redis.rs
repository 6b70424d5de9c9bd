//! Private `redis-server` processes for tests and benchmarks.
//!
//! [`RedisServer`] is one server without persistence on a free port of 127.0.0.1, with its own
//! scratch directory; [`RedisCluster`] is a Redis Cluster made of such servers. Both kill their
//! processes and remove their directories on drop, also when a test panics. Assertions go
//! through `redis-cli`, so they see what the server holds, not what a client library reports.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use super::{Process, free_ports, poll_until, run};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
const SLOTS: usize = 16384;

/// A `redis-server` of one's own: no persistence, a free port on 127.0.0.1, its own directory.
/// Dropping it kills the process (paused or not) and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// The cluster bus port; `Some` for cluster nodes.
    bus_port: Option<u16>,
    /// The TLS port and its files; `Some` for [`RedisServer::start_tls`].
    tls: Option<(u16, TlsFiles)>,
    extra: Vec<String>,
    process: Process,
}

/// The files of a Redis serving TLS ([`RedisServer::start_tls`]), all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate (valid for 127.0.0.1).
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// The CA client certificates must chain to.
    pub ca: std::path::PathBuf,
    /// Whether a client must present a certificate (`--tls-auth-clients yes`).
    pub clients_need_certs: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, such as
    /// `["--enable-debug-command", "local"]`, and waits until it answers PING.
    pub fn start_with(args: &[&str]) -> io::Result<Self> {
        Self::launch(args, false, None)
    }

    /// A replica of `primary`, once its link to the primary is up (within `timeout`).
    pub fn start_replica_of(primary: &RedisServer, timeout: Duration) -> io::Result<Self> {
        let of = primary.port().to_string();
        let replica = Self::start_with(&["--replicaof", "127.0.0.1", &of])?;
        poll_until(timeout, || {
            let info = replica.cli(&["info", "replication"])?;
            Ok(info.contains("master_link_status:up").then_some(()))
        })?;
        Ok(replica)
    }

    /// Starts a server that also serves TLS with `files` ([`RedisServer::tls_url`]); its
    /// plain port stays for the harness's own checks.
    pub fn start_tls(files: TlsFiles) -> io::Result<Self> {
        Self::launch(&[], false, Some(files))
    }

    /// Starts a server on free ports, picking others while the chosen ones turn out taken.
    fn launch(args: &[&str], cluster: bool, tls: Option<TlsFiles>) -> io::Result<Self> {
        let mut retries = 1..START_ATTEMPTS;
        loop {
            let ports = free_ports(2 + usize::from(cluster))?;
            let mut server = RedisServer {
                port: ports[0],
                bus_port: cluster.then_some(ports[1]),
                tls: tls.clone().map(|files| (ports[ports.len() - 1], files)),
                extra: args.iter().map(|a| a.to_string()).collect(),
                process: Process::new(&format!("redis-{}", ports[0]))?,
            };
            match server.restart() {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && retries.next().is_some() => {}
                result => return result.map(|()| server),
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr())
    }

    /// `rediss://127.0.0.1:<TLS port>/` for a server started with [`RedisServer::start_tls`].
    pub fn tls_url(&self) -> Option<String> {
        let (port, _) = self.tls.as_ref()?;
        Some(format!("rediss://127.0.0.1:{port}/"))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// Whether the process is alive; a paused one is.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Kills the process with SIGKILL and reaps it: its data is gone. A no-op when killed.
    pub fn kill(&mut self) -> io::Result<()> {
        self.process.kill()
    }

    /// Freezes the process with SIGSTOP: connections are accepted but never answered.
    pub fn pause(&mut self) -> io::Result<()> {
        self.process.pause()
    }

    /// Thaws a paused process with SIGCONT.
    pub fn resume(&mut self) -> io::Result<()> {
        self.process.resume()
    }

    /// Starts the server again on the same port and directory (killing it first if it still
    /// runs) and waits until it answers PING. It comes back empty; a cluster node comes back
    /// with its `nodes.conf` and rejoins its cluster.
    pub fn restart(&mut self) -> io::Result<()> {
        self.process.spawn(self.command())?;
        self.wait_for_ping()
    }

    /// Runs `redis-cli -p <port> <args>` and returns its stdout, trimmed. Error replies come
    /// back as text (`ERR ...`) since `redis-cli` exits 0 on them; failing to connect is an
    /// error, and so is a call that takes over 10 s (a paused server).
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        Ok(run(cmd.args(args), CLI_TIMEOUT)?.trim().to_owned())
    }

    /// How many times the server ran `command` (lower case, as `INFO commandstats` names it;
    /// calls from inside scripts count too), 0 before the first.
    pub fn command_calls(&self, command: &str) -> io::Result<u64> {
        self.command_stat(command, "calls")
    }

    /// How many times the server refused to run `command` before running it (an ACL, a wrong
    /// number of arguments: `rejected_calls` in `INFO commandstats`), 0 before the first.
    pub fn command_rejections(&self, command: &str) -> io::Result<u64> {
        self.command_stat(command, "rejected_calls")
    }

    /// One field of `command`'s line in `INFO commandstats`, 0 before the command's first call.
    fn command_stat(&self, command: &str, field: &str) -> io::Result<u64> {
        let stats = self.cli(&["info", "commandstats"])?;
        let prefix = format!("cmdstat_{command}:");
        let value = stats
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
            });
        value.map_or(Ok(0), |n| parse_reply(n.trim().to_owned()))
    }

    /// `DBSIZE`: keys physically present, including expired keys not yet reclaimed.
    pub fn dbsize(&self) -> io::Result<u64> {
        parse_reply(self.cli(&["dbsize"])?)
    }

    /// The `keys=` counts of `INFO keyspace`, summed over databases (0 when there are none):
    /// keys physically present, including expired keys not yet reclaimed.
    pub fn info_keyspace_keys(&self) -> io::Result<u64> {
        Ok(keyspace_keys(&self.cli(&["info", "keyspace"])?))
    }

    fn command(&self) -> Command {
        let (dir, port) = (self.process.dir(), self.port.to_string());
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--daemonize", "no"]);
        cmd.args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir);
        cmd.arg("--logfile").arg(dir.join("redis.log"));
        if let Some(bus_port) = self.bus_port {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
            cmd.args(["--cluster-port", &bus_port.to_string()]);
            cmd.arg("--cluster-config-file").arg(dir.join("nodes.conf"));
        }
        if let Some((port, files)) = &self.tls {
            cmd.args(["--tls-port", &port.to_string()]);
            cmd.arg("--tls-cert-file").arg(&files.cert);
            cmd.arg("--tls-key-file").arg(&files.key);
            cmd.arg("--tls-ca-cert-file").arg(&files.ca);
            let need = if files.clients_need_certs {
                "yes"
            } else {
                "no"
            };
            cmd.args(["--tls-auth-clients", need]);
        }
        cmd.args(&self.extra);
        cmd
    }

    fn wait_for_ping(&mut self) -> io::Result<()> {
        let (addr, process) = (self.addr(), &mut self.process);
        let answered = poll_until(START_TIMEOUT, || match process.exited()? {
            Some(status) => Err(io::Error::other(format!("exited with {status}"))),
            None => Ok(ping(addr).then_some(())),
        });
        answered.map_err(|e| self.failure(e))
    }

    /// `error` with the end of the logs; `AddrInUse` when the port was taken.
    fn failure(&self, error: io::Error) -> io::Error {
        let tail = self.process.log_tail("redis.log", 20);
        let kind = match tail.contains("Address already in use") {
            true => io::ErrorKind::AddrInUse,
            false => error.kind(),
        };
        let msg = format!("redis-server on port {}: {error}\n{tail}", self.port);
        io::Error::new(kind, msg)
    }
}

/// Whether a Redis answers an inline `PING` on `addr` within half a second.
fn ping(addr: SocketAddr) -> bool {
    let exchange = || -> io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0; 5];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG")
    };
    exchange().unwrap_or(false)
}

/// Sums the `dbN:keys=K,...` lines of an `INFO keyspace` reply.
fn keyspace_keys(info: &str) -> u64 {
    let keys = |line: &str| {
        let (_, counts) = line.split_once(":keys=")?;
        counts.split(',').next()?.parse::<u64>().ok()
    };
    info.lines().filter_map(keys).sum()
}

fn parse_reply<T: FromStr>(reply: String) -> io::Result<T> {
    reply
        .parse()
        .map_err(|_| invalid(format!("unexpected reply {reply:?}")))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A Redis Cluster of private [`RedisServer`]s on 127.0.0.1, with a 2 s node timeout so
/// failovers take seconds. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters * (1 + replicas_per_master)` nodes, joins them with
    /// `redis-cli --cluster create` and waits (up to 30 s) until every node reports
    /// `cluster_state:ok` with all 16384 slots served and every replica in sync.
    /// Redis needs at least 3 masters.
    pub fn start(masters: usize, replicas_per_master: usize) -> io::Result<Self> {
        Self::launch(masters, replicas_per_master, None)
    }

    /// [`RedisCluster::start`] with every node also serving TLS with `files` (the cluster
    /// bus and replication over TLS too): a client on a TLS port is told the nodes' TLS ports
    /// (Redis 7), so [`RedisCluster::tls_urls`] reach the whole cluster; the plain ports stay
    /// for the harness's own checks.
    pub fn start_tls(
        masters: usize,
        replicas_per_master: usize,
        files: TlsFiles,
    ) -> io::Result<Self> {
        Self::launch(masters, replicas_per_master, Some(files))
    }

    fn launch(
        masters: usize,
        replicas_per_master: usize,
        tls: Option<TlsFiles>,
    ) -> io::Result<Self> {
        if masters < 3 {
            let msg = "a Redis Cluster needs 3 masters or more";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let count = masters * (1 + replicas_per_master);
        let args: &[&str] = match tls {
            Some(_) => &["--tls-cluster", "yes", "--tls-replication", "yes"],
            None => &[],
        };
        let nodes = (0..count).map(|_| RedisServer::launch(args, true, tls.clone()));
        let cluster = RedisCluster {
            nodes: nodes.collect::<io::Result<_>>()?,
        };
        cluster.create(replicas_per_master)?;
        let replicas = count - masters;
        cluster.wait_until(CLUSTER_TIMEOUT, |c| {
            c.is_healthy() && c.synced() == replicas
        })?;
        Ok(cluster)
    }

    /// Every node's URL, killed ones included.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node's `rediss://` URL, for a cluster started with [`RedisCluster::start_tls`].
    pub fn tls_urls(&self) -> Option<Vec<String>> {
        self.nodes.iter().map(RedisServer::tls_url).collect()
    }

    /// Every node, killed ones included.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node on `port`, to kill, pause or restart it.
    pub fn node_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|n| n.port == port)
    }

    /// The running, unpaused nodes whose `ROLE` is currently master, in start order.
    pub fn masters(&self) -> Vec<&RedisServer> {
        let is_master = |n: &&RedisServer| n.cli(&["role"]).is_ok_and(|r| r.starts_with("master"));
        self.live().filter(is_master).collect()
    }

    /// The master serving `slot`, according to `CLUSTER NODES` on the first live node.
    pub fn node_for_slot(&self, slot: u16) -> io::Result<&RedisServer> {
        let view = self.first_live()?.cli(&["cluster", "nodes"])?;
        let owner =
            parse_nodes(&view).find(|n| n.serving && n.slots.iter().any(|r| r.contains(&slot)));
        let owner = owner.and_then(|n| self.nodes.iter().find(|s| s.port == n.port));
        owner.ok_or_else(|| invalid(format!("no master serves slot {slot}:\n{view}")))
    }

    /// The master serving `key`'s slot (`CLUSTER KEYSLOT`).
    pub fn master_for_key(&self, key: &str) -> io::Result<&RedisServer> {
        let slot = parse_reply(self.first_live()?.cli(&["cluster", "keyslot", key])?)?;
        self.node_for_slot(slot)
    }

    /// Kills `masters()[index]` and returns its port (to [`restart`](RedisServer::restart)
    /// it through [`node_mut`](Self::node_mut)).
    pub fn kill_master(&mut self, index: usize) -> io::Result<u16> {
        let port = self.masters().get(index).map(|m| m.port());
        let port = port.ok_or_else(|| invalid(format!("no master #{index}")))?;
        self.node_mut(port).map_or(Ok(()), RedisServer::kill)?;
        Ok(port)
    }

    /// Waits until every live node reports `cluster_state:ok` and sees all 16384 slots
    /// served by live masters: replicas have taken over from killed masters.
    pub fn wait_for_failover(&self, timeout: Duration) -> io::Result<()> {
        self.wait_until(timeout, Self::is_healthy)
    }

    /// Waits until the cluster is healthy again ([`wait_for_failover`](Self::wait_for_failover))
    /// and `replicas` live nodes are replicas in sync with their master: a restarted master
    /// has rejoined as a replica and caught up.
    pub fn wait_for_replicas(&self, replicas: usize, timeout: Duration) -> io::Result<()> {
        self.wait_until(timeout, |c| c.is_healthy() && c.synced() == replicas)
    }

    /// `DBSIZE` summed over the masters.
    pub fn total_keys(&self) -> io::Result<u64> {
        self.masters().iter().map(|m| m.dbsize()).sum()
    }

    /// Joins the nodes into a cluster, with `replicas` replicas per master.
    fn create(&self, replicas: usize) -> io::Result<()> {
        let addrs = self.nodes.iter().map(|n| n.addr().to_string());
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"]).args(addrs);
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        run(&mut cmd, CLUSTER_TIMEOUT).map(drop)
    }

    fn wait_until(&self, timeout: Duration, ready: impl Fn(&Self) -> bool) -> io::Result<()> {
        poll_until(timeout, || Ok(ready(self).then_some(()))).map_err(|e| {
            let view = self.first_live().and_then(|n| n.cli(&["cluster", "nodes"]));
            io::Error::new(e.kind(), format!("cluster {e}:\n{view:?}"))
        })
    }

    fn is_healthy(&self) -> bool {
        self.live()
            .all(|n| self.sees_all_slots_served(n).unwrap_or(false))
    }

    /// Whether `node` is `cluster_state:ok`, knows every node and sees every slot served
    /// by a live master (right after a kill it still reports ok).
    fn sees_all_slots_served(&self, node: &RedisServer) -> io::Result<bool> {
        let info = node.cli(&["cluster", "info"])?;
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        let ok = |l: &&str| *l == "cluster_state:ok" || *l == known;
        let ok = info.lines().filter(ok).count() == 2;
        let view = node.cli(&["cluster", "nodes"])?;
        let live = |n: &NodeLine| n.serving && self.live().any(|s| s.port == n.port);
        let served = parse_nodes(&view).filter(live).map(|n| n.slot_count());
        Ok(ok && served.sum::<usize>() == SLOTS)
    }

    /// How many live nodes are replicas with their master link up.
    fn synced(&self) -> usize {
        let up = |i: String| i.contains("master_link_status:up");
        self.live()
            .filter(|n| n.cli(&["info", "replication"]).is_ok_and(up))
            .count()
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.process.is_live())
    }

    fn first_live(&self) -> io::Result<&RedisServer> {
        self.live()
            .next()
            .ok_or_else(|| invalid("no live node".into()))
    }
}

/// One line of `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master> ... <slot ranges>`.
struct NodeLine {
    port: u16,
    /// A master nobody suspects of failing.
    serving: bool,
    slots: Vec<RangeInclusive<u16>>,
}

impl NodeLine {
    fn slot_count(&self) -> usize {
        self.slots.iter().map(|r| r.clone().count()).sum()
    }
}

fn parse_nodes(text: &str) -> impl Iterator<Item = NodeLine> {
    text.lines().filter_map(parse_node_line)
}

fn parse_node_line(line: &str) -> Option<NodeLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (host_port, flags) = (fields.get(1)?.split('@').next()?, fields.get(2)?);
    let range = |text: &&str| {
        let (lo, hi) = text.split_once('-').unwrap_or((text, text));
        Some(lo.parse().ok()?..=hi.parse().ok()?)
    };
    Some(NodeLine {
        port: host_port.rsplit(':').next()?.parse().ok()?,
        serving: flags.split(',').any(|f| f == "master") && !flags.contains("fail"),
        slots: fields.iter().skip(8).filter_map(range).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Instant;

    use super::*;

    fn alive(pid: u32) -> bool {
        let mut probe = Command::new("kill");
        run(probe.args(["-0", &pid.to_string()]), CLI_TIMEOUT).is_ok()
    }

    #[test]
    fn info_and_cluster_nodes_replies_parse() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb1:keys=2,expires=0";
        assert_eq!((keyspace_keys(info), keyspace_keys("# Keyspace")), (5, 0));
        let line = "ab 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-99 200 [5->-cd]";
        let node = parse_node_line(line).unwrap();
        assert_eq!(
            (node.port, node.serving, node.slot_count()),
            (7001, true, 101)
        );
        let failed = parse_node_line("ab 127.0.0.1:7001@1 master,fail - 0 0 1 connected 0-9");
        assert!(!failed.unwrap().serving);
    }

    #[test]
    fn a_server_stores_what_the_cli_sets() {
        let server = RedisServer::start().unwrap();
        let url = format!("redis://127.0.0.1:{}/", server.port());
        assert_eq!(server.url(), url);
        assert_eq!(server.info_keyspace_keys().unwrap(), 0);
        assert_eq!(server.cli(&["set", "k", "v"]).unwrap(), "OK");
        assert_eq!(server.cli(&["get", "k"]).unwrap(), "v");
        assert_eq!(server.dbsize().unwrap(), 1);
        assert_eq!(server.info_keyspace_keys().unwrap(), 1);
    }

    #[test]
    fn expired_keys_are_counted_until_reclaimed() {
        let server = RedisServer::start_with(&["--enable-debug-command", "local"]).unwrap();
        server.cli(&["debug", "set-active-expire", "0"]).unwrap();
        server.cli(&["set", "k", "v", "px", "1"]).unwrap();
        thread::sleep(Duration::from_millis(20));
        assert_eq!(server.dbsize().unwrap(), 1);
        assert_eq!(server.info_keyspace_keys().unwrap(), 1);
        assert_eq!(server.cli(&["get", "k"]).unwrap(), "");
        assert_eq!(server.dbsize().unwrap(), 0);
    }

    #[test]
    fn a_paused_server_answers_only_once_resumed() {
        let mut server = RedisServer::start().unwrap();
        server.pause().unwrap();
        assert!(server.is_running());
        assert!(!ping(server.addr()));
        server.resume().unwrap();
        assert!(ping(server.addr()));
    }

    #[test]
    fn a_killed_server_restarts_empty_on_the_same_port() {
        let mut server = RedisServer::start().unwrap();
        let port = server.port();
        server.cli(&["set", "k", "v"]).unwrap();
        server.kill().unwrap();
        assert!(!server.is_running());
        assert!(server.cli(&["ping"]).is_err());
        server.restart().unwrap();
        assert_eq!((server.port(), server.dbsize().unwrap()), (port, 0));
    }

    #[test]
    fn a_cluster_fails_over_when_a_master_dies() {
        let started = Instant::now();
        let mut cluster = RedisCluster::start(3, 1).unwrap();
        assert_eq!((cluster.nodes().len(), cluster.masters().len()), (6, 3));
        let owner = cluster.master_for_key("k").unwrap();
        assert_eq!(owner.cli(&["set", "k", "v"]).unwrap(), "OK");
        assert_eq!(owner.cli(&["wait", "1", "5000"]).unwrap(), "1");
        let old = owner.port();
        let index = cluster.masters().iter().position(|m| m.port() == old);
        assert_eq!(cluster.kill_master(index.unwrap()).unwrap(), old);
        cluster.wait_for_failover(Duration::from_secs(20)).unwrap();
        let new = cluster.master_for_key("k").unwrap();
        assert_ne!(new.port(), old);
        assert_eq!(new.cli(&["get", "k"]).unwrap(), "v");
        assert_eq!(cluster.total_keys().unwrap(), 1);
        let pids: Vec<_> = cluster
            .nodes()
            .iter()
            .filter_map(|n| n.process.pid())
            .collect();
        drop(cluster);
        assert!(pids.iter().all(|&pid| !alive(pid)));
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
