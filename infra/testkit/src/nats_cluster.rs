use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::nats::NatsServer;

/// How long a node may take to see a JetStream meta leader and catch up (start-up,
/// a restart after SIGKILL with its store to recover).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// How a test cluster is configured.
#[derive(Debug, Clone)]
pub struct NatsClusterOptions {
    /// `sync_interval: always` on every node (the default): each node fsyncs a write
    /// before it counts towards the quorum, as in production.
    pub sync_always: bool,
}

impl Default for NatsClusterOptions {
    fn default() -> Self {
        Self { sync_always: true }
    }
}

/// Three real `nats-server`s with JetStream on free loopback ports, routed into one
/// cluster, each with its own store directory; killed and removed on drop.
///
/// Nodes are numbered 0, 1 and 2. `kill(i)` sends SIGKILL; `restart(i)` brings the node
/// back on the same ports and store and waits until it is healthy again.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    monitor_port: u16,
    server: NatsServer,
}

impl NatsCluster {
    /// Starts three nodes with `sync_interval: always` and waits until every one of them
    /// knows the JetStream meta leader.
    ///
    /// # Panics
    /// When no suitable nats-server is installed or the cluster does not form in time.
    pub fn start() -> Self {
        Self::start_with(NatsClusterOptions::default())
    }

    /// Starts three nodes with the given options; see [`NatsCluster::start`].
    ///
    /// # Panics
    /// When no suitable nats-server is installed or the cluster does not form in time.
    pub fn start_with(options: NatsClusterOptions) -> Self {
        Self::try_start(&options).expect("starting a three-node nats-server cluster for a test")
    }

    fn try_start(options: &NatsClusterOptions) -> anyhow::Result<Self> {
        const SIZE: usize = 3;
        // Client, route and monitoring port per node, all distinct.
        let ports = free_ports(3 * SIZE)?;
        let (clients, rest) = ports.split_at(SIZE);
        let (routes, monitors) = rest.split_at(SIZE);
        // A cluster name of its own: a node of another test's cluster that happened to
        // get one of these ports later is refused instead of joining.
        let cluster_name = format!("shopstream-test-{}", clients[0]);
        let route_list: Vec<String> = routes
            .iter()
            .map(|port| format!("    nats-route://127.0.0.1:{port}"))
            .collect();
        let sync = if options.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let mut nodes = Vec::with_capacity(SIZE);
        let per_node = clients.iter().zip(routes).zip(monitors);
        for (i, ((&client, &route), &monitor)) in per_node.enumerate() {
            let store = tempfile::Builder::new()
                .prefix("shopstream-nats-cluster-")
                .tempdir()?;
            let name = format!("n{i}-{client}");
            let config = store.path().join("server.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{client}\n\
                     http: 127.0.0.1:{monitor}\n\
                     jetstream {{\n  store_dir: \"{store_dir}\"{sync}\n}}\n\
                     cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{route}\n  routes: [\n{route_urls}\n  ]\n}}\n",
                    store_dir = store.path().join("js").display(),
                    route_urls = route_list.join("\n"),
                ),
            )?;
            let server = NatsServer::spawn_configured(store, client, config, None)?;
            nodes.push(Node {
                name,
                monitor_port: monitor,
                server,
            });
        }
        let cluster = Self { nodes };
        for i in 0..SIZE {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL alone.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].server.url()
    }

    /// Node `i`'s `server_name`, as JetStream reports it (for example as a stream's
    /// cluster leader).
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `server_name`.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == server_name)
    }

    /// Kills node `i` with SIGKILL: no shutdown, no flush, no leader hand-over.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].server.kill();
    }

    /// Starts node `i` again on its ports and store, and waits until it is healthy: it
    /// knows the meta leader and its streams have caught up.
    ///
    /// # Panics
    /// When it does not come back in time (the message carries its log).
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].server.restart();
        if let Err(error) = self.wait_healthy(i) {
            panic!("restarting node {i}: {error:#}");
        }
    }

    /// Node `i`'s log so far, for assertion messages.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].server.log()
    }

    /// Waits until node `i`'s `/healthz` answers 200: JetStream is up, the node has
    /// contact with a meta leader, and its streams and consumers are current.
    fn wait_healthy(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let answer = http_get(node.monitor_port, "/healthz");
            if matches!(answer, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} was not healthy after {HEALTHY_TIMEOUT:?} (last answer {answer:?}):\n{}",
                    node.name,
                    node.server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `n` distinct free loopback ports: every listener is held until all are chosen.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// A blocking HTTP/1.0 GET on loopback: status and body.
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    match (status, response.split_once("\r\n\r\n")) {
        (Some(status), Some((_, body))) => Ok((status, body.to_owned())),
        _ => bail!("not an HTTP answer: {response:?}"),
    }
}
