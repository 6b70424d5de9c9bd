//! The `vicinity` binary: parse arguments, set up logging, call into the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use vicinity::{
    client::{Client, render},
    config::{Config, ServeArgs},
    grpc::pb,
    places, receipts, server, telemetry,
};

/// glibc's malloc took about a fifth of the service's CPU under load (`perf`, see
/// docs/performance.md); mimalloc's thread-local heaps suit tokio's many short allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Consent-gated People Nearby and Shake backend.
#[derive(Parser)]
#[command(
    name = "vicinity",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("VICINITY_BUILD"), ")"),
    about
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Purge a user's location data at once (all features unless --feature).
    ClearLocation {
        #[command(flatten)]
        target: Target,
        /// people-nearby or shake.
        #[arg(long)]
        feature: Option<String>,
    },
    /// Erase a user (account deletion): their location data and their consent history, at
    /// once and for good. Needs an `ops` key and `--yes`.
    ForgetUser {
        #[command(flatten)]
        target: Target,
        /// Confirms the erasure: it cannot be undone, and the consent history goes too.
        #[arg(long)]
        yes: bool,
    },
    /// Show everything held about a user.
    Export {
        #[command(flatten)]
        target: Target,
    },
    /// Show or change a user's consent.
    Consent {
        #[command(subcommand)]
        action: ConsentAction,
    },
    /// Check that a server is serving (readiness: `""`, the default; or `liveness`, or a
    /// vicinity service name).
    Health {
        #[command(flatten)]
        conn: Conn,
        /// The health service to check: empty for readiness, `liveness` for liveness.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Drive a running service with a workload and report latency and throughput.
    Load(Box<vicinity_load::LoadArgs>),
    /// Sensitive-place policies (contract §4.8).
    Places {
        #[command(subcommand)]
        action: PlacesAction,
    },
}

#[derive(Subcommand)]
enum PlacesAction {
    /// Tile the operator's GeoJSON list of sensitive places and/or an OpenStreetMap extract
    /// to a policy file for `serve --places`.
    Compile {
        /// GeoJSON FeatureCollection: Points (optional `radius_m`), Polygons or MultiPolygons,
        /// each with a `category` (health, reproductive_health, mental_health, addiction,
        /// worship, shelter, military). Repeat the flag for several files.
        #[arg(long, required_unless_present = "osm")]
        geojson: Vec<std::path::PathBuf>,
        /// OpenStreetMap extract (`.osm.pbf`): its clinics, places of worship, shelters, ...
        /// by their tags (docs/operations.md). Repeat for several.
        #[arg(long)]
        osm: Vec<std::path::PathBuf>,
        /// The grid's resolution (`serve --snap-resolution`).
        #[arg(long, default_value_t = 9)]
        resolution: u8,
        /// Every position in a parent cell at this resolution that holds a place is shown
        /// at one cell of it.
        #[arg(long, default_value_t = 7)]
        coarse_resolution: u8,
        /// Rings of cells added around each place.
        #[arg(long, default_value_t = 1)]
        margin: u32,
        /// Do not place users inside places of this category at all, instead of coarsening
        /// (repeat for several; see docs/privacy.md for what it gives and costs).
        #[arg(long)]
        hide: Vec<String>,
        /// Where to write the policy.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ConsentAction {
    /// Record consent for a feature.
    Grant {
        #[command(flatten)]
        target: Target,
        /// people-nearby or shake.
        #[arg(long)]
        feature: String,
        /// The privacy notice version shown to the user.
        #[arg(long)]
        notice_version: String,
        /// Where consent was given.
        #[arg(long, default_value = "vicinity-cli")]
        source: String,
    },
    /// Withdraw consent for a feature (purges its data).
    Withdraw {
        #[command(flatten)]
        target: Target,
        /// people-nearby or shake.
        #[arg(long)]
        feature: String,
    },
    /// Show current consent and history.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Check a signed consent receipt offline and print its record (exit 1 if it does not
    /// verify).
    Verify {
        /// The operator's published public keys (PEM), one per flag: after a rotation, give
        /// the old ones too; the receipt names the key it was signed with.
        #[arg(
            long = "public-key",
            env = "VICINITY_PUBLIC_KEY",
            required_unless_present = "jwks"
        )]
        public_keys: Vec<std::path::PathBuf>,
        /// The operator's published key set (a JWKS, as `vicinity consent jwks` writes it),
        /// instead of or beside --public-key.
        #[arg(long, env = "VICINITY_JWKS")]
        jwks: Option<std::path::PathBuf>,
        /// The receipt (a `receipt` field of GrantConsent, WithdrawConsent, GetConsent or
        /// ExportMyData).
        receipt: String,
    },
    /// Print the JSON Web Key Set of the given public keys, to publish beside them: any JOSE
    /// library then verifies receipts by their `kid`.
    Jwks {
        /// The public keys (PEM), one per flag: every key receipts were ever signed with.
        #[arg(long = "public-key", env = "VICINITY_PUBLIC_KEY", required = true)]
        public_keys: Vec<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct Conn {
    /// Server address.
    #[arg(long, env = "VICINITY_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// API key.
    #[arg(long, env = "VICINITY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// TLS to an https:// server.
    #[command(flatten)]
    tls: vicinity_load::args::TlsArgs,
}

#[derive(Args)]
struct Target {
    /// The user.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    conn: Conn,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match &cli.command {
        // The harness shares the machine with what it measures: its own threads are a flag
        // (docs/performance.md, "The harness's threads").
        Command::Load(args) => {
            builder.worker_threads(usize::from(args.threads));
        }
        Command::Serve(args) if args.threads > 0 => {
            builder.worker_threads(usize::from(args.threads));
        }
        _ => {}
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vicinity: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vicinity: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: libraries often repeat their
/// source's text in their own (`tcp connect error: tcp connect error: Connection refused`),
/// so a cause whose text the line already holds is left out.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::ClearLocation { target, feature } => clear_location(&target, feature).await,
        Command::ForgetUser { target, yes } => forget_user(&target, yes).await,
        Command::Export { target } => {
            let request = pb::ExportMyDataRequest {
                user_id: target.user.clone(),
            };
            let client = connect(&target.conn).await?;
            let reply = client.privacy().export_my_data(request).await?;
            print!("{}", render::export(&reply.into_inner()));
            Ok(())
        }
        Command::Consent { action } => consent(action).await,
        Command::Load(args) => Ok(vicinity_load::main(&args).await?),
        Command::Places { action } => places(action),
        Command::Health { conn, service } => health(&conn, service).await,
    }
}

async fn clear_location(target: &Target, feature: Option<String>) -> anyhow::Result<()> {
    let feature = feature
        .as_deref()
        .map(parse_feature)
        .transpose()?
        .unwrap_or_default();
    let request = pb::ClearLocationRequest {
        user_id: target.user.clone(),
        feature: feature.into(),
    };
    let client = connect(&target.conn).await?;
    let reply = client.privacy().clear_location(request).await?;
    println!("purged {} entries", reply.into_inner().purged_entries);
    Ok(())
}

async fn forget_user(target: &Target, yes: bool) -> anyhow::Result<()> {
    if !yes {
        anyhow::bail!(
            "forget-user erases the user's location data and consent history for good: \
             add --yes to confirm"
        );
    }
    let request = pb::ForgetUserRequest {
        user_id: target.user.clone(),
    };
    let client = connect(&target.conn).await?;
    let reply = client.privacy().forget_user(request).await?.into_inner();
    println!(
        "purged {} entries, deleted {} consent events",
        reply.purged_entries, reply.consent_events_deleted
    );
    Ok(())
}

async fn health(conn: &Conn, service: String) -> anyhow::Result<()> {
    let request = tonic_health::pb::HealthCheckRequest { service };
    let reply = connect(conn)
        .await?
        .health()
        .check(request)
        .await?
        .into_inner();
    let status = tonic_health::pb::health_check_response::ServingStatus::try_from(reply.status)
        .map_or("UNKNOWN", |s| s.as_str_name());
    println!("{status}");
    anyhow::ensure!(status == "SERVING", "not serving");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (exporter, tracer) = match &args.otlp_endpoint {
        Some(endpoint) => {
            let (exporter, tracer) = telemetry::otlp::start(endpoint)?;
            (Some(exporter), Some(tracer))
        }
        None => (None, None),
    };
    telemetry::init(args.log_format, tracer);
    let served = serve_with(args).await;
    if let Some(exporter) = exporter {
        // Sends the spans still batched; blocking, so off the runtime's threads.
        drop(tokio::task::spawn_blocking(move || exporter.shutdown()).await);
    }
    served
}

async fn serve_with(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(&args)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let listeners = server::Listeners {
        grpc: listener,
        metrics,
    };
    server::run(config, listeners, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return drop(ctrl_c.await),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    drop(ctrl_c.await);
}

async fn consent(action: ConsentAction) -> anyhow::Result<()> {
    match action {
        ConsentAction::Grant {
            target,
            feature,
            notice_version,
            source,
        } => {
            let request = pb::GrantConsentRequest {
                user_id: target.user.clone(),
                feature: parse_feature(&feature)?.into(),
                notice_version,
                source,
            };
            let client = connect(&target.conn).await?;
            let record = client.consent().grant_consent(request).await?;
            println!("{}", render::consent(&record.into_inner()));
        }
        ConsentAction::Withdraw { target, feature } => {
            let request = pb::WithdrawConsentRequest {
                user_id: target.user.clone(),
                feature: parse_feature(&feature)?.into(),
            };
            let client = connect(&target.conn).await?;
            let reply = client
                .consent()
                .withdraw_consent(request)
                .await?
                .into_inner();
            if let Some(record) = &reply.record {
                println!("{}", render::consent(record));
            }
            println!("purged {} entries", reply.purged_entries);
        }
        ConsentAction::Show { target } => consent_show(&target).await?,
        ConsentAction::Verify {
            public_keys,
            jwks,
            receipt,
        } => consent_verify(&public_keys, jwks.as_deref(), &receipt)?,
        ConsentAction::Jwks { public_keys } => {
            println!("{:#}", receipts::jwks(&pem_keys(&public_keys)?));
        }
    }
    Ok(())
}

async fn consent_show(target: &Target) -> anyhow::Result<()> {
    let request = pb::GetConsentRequest {
        user_id: target.user.clone(),
    };
    let client = connect(&target.conn).await?;
    let reply = client.consent().get_consent(request).await?.into_inner();
    println!("current:");
    reply
        .current
        .iter()
        .for_each(|r| println!("  {}", render::consent(r)));
    println!("history:");
    reply
        .history
        .iter()
        .for_each(|r| println!("  {}", render::consent(r)));
    Ok(())
}

fn consent_verify(
    public_keys: &[std::path::PathBuf],
    jwks: Option<&std::path::Path>,
    receipt: &str,
) -> anyhow::Result<()> {
    let mut keys = pem_keys(public_keys)?;
    if let Some(path) = jwks {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--jwks {}", path.display()))?;
        keys.extend(receipts::PublicKey::from_jwks(&text).context("--jwks")?);
    }
    let verified = receipts::verify(receipt, &keys).context("the receipt")?;
    println!("valid: signed by key {}", verified.kid);
    println!("{:#}", verified.record);
    Ok(())
}

/// The public keys (PEM) of `--public-key` flags.
fn pem_keys(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<receipts::PublicKey>> {
    paths
        .iter()
        .map(|path| receipts::PublicKey::from_pem_file(path))
        .collect::<Result<Vec<_>, _>>()
        .context("--public-key")
}

fn places(action: PlacesAction) -> anyhow::Result<()> {
    let PlacesAction::Compile {
        geojson,
        osm,
        resolution,
        coarse_resolution,
        margin,
        hide,
        out,
    } = action;
    let hide = hide
        .iter()
        .map(|name| {
            places::Category::parse(name)
                .map(|c| (c, places::Action::Hide))
                .with_context(|| format!("--hide: unknown category {name:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let resolution = h3o::Resolution::try_from(resolution).context("--resolution")?;
    let coarse = h3o::Resolution::try_from(coarse_resolution).context("--coarse-resolution")?;
    if coarse >= resolution {
        anyhow::bail!("--coarse-resolution: must be coarser (smaller) than --resolution");
    }
    let mut listed = Vec::new();
    for path in &geojson {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--geojson: {}: cannot be read", path.display()))?;
        let cells = places::compile::from_geojson(&text, resolution, margin)
            .with_context(|| format!("--geojson: {}", path.display()))?;
        listed.extend(cells);
    }
    for path in &osm {
        let cells = places::compile::from_osm(path, resolution, margin)
            .with_context(|| format!("--osm: {}", path.display()))?;
        listed.extend(cells);
    }
    let text = places::compile::render(&listed, resolution, coarse, &hide);
    if text.len() as u64 > places::MAX_POLICY_BYTES {
        anyhow::bail!(
            "the policy would be larger than the {} bytes a server reads: fewer or smaller places",
            places::MAX_POLICY_BYTES
        );
    }
    let policy = places::Policy::parse(&text).context("the compiled policy")?;
    // Written beside and renamed over `--out`: a server reloading that file (SIGHUP) reads
    // the old policy or the new one, never half of one.
    let partial = out.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &out))
        .with_context(|| format!("--out: {}: cannot be written", out.display()))?;
    println!(
        "{}: {} cells, version {}",
        out.display(),
        policy.cells(),
        policy.version()
    );
    Ok(())
}

fn parse_feature(name: &str) -> anyhow::Result<pb::Feature> {
    match name {
        "people-nearby" | "people_nearby" => Ok(pb::Feature::PeopleNearby),
        "shake" => Ok(pb::Feature::Shake),
        _ => anyhow::bail!("unknown feature {name:?}: use people-nearby or shake"),
    }
}

async fn connect(conn: &Conn) -> anyhow::Result<Client> {
    let addr = &conn.addr;
    anyhow::ensure!(
        addr.contains("://"),
        "--addr {addr}: a URL is needed, e.g. http://{addr} (https:// with TLS)"
    );
    let tls = conn.tls.load()?;
    let client = Client::connect_with(addr, conn.api_key.as_deref(), tls.as_ref()).await;
    client.map_err(|e| anyhow::anyhow!(e).context(format!("--addr {addr}")))
}
