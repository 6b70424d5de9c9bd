//! The packaging runs as shipped: the command line of the systemd unit
//! (`deploy/systemd/vicinity.service`) and the Kubernetes Deployment's container arguments
//! (`deploy/kubernetes/vicinity.yaml`), taken from those files, with only the binary's path,
//! the secret files' directory and the ports swapped for the test's, serve over mutual TLS
//! on a non-loopback listen address with API keys, answer the probes the packaging points at
//! (`/livez`, `/readyz` on the metrics listener) and take a call. `systemd-analyze verify`
//! and `kubernetes-validate` check the files themselves (`scripts/packaging-check`).

use std::{fs, net::SocketAddr, path::Path, process::Command};

use vicinity_testing::redis::RedisServer;

use crate::binary::{GRANT_ALICE, Served, free_port, http_status, stdout, vicinity};

/// The repository's copy of a packaging file.
fn shipped(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `ExecStart=` command line (continuation lines joined), split on whitespace.
fn exec_start(unit: &str) -> Vec<String> {
    let mut line = String::new();
    let mut lines = unit.lines().skip_while(|l| !l.starts_with("ExecStart="));
    for part in lines.by_ref() {
        let part = part.trim();
        match part.strip_suffix('\\') {
            Some(head) => line.push_str(head),
            None => {
                line.push_str(part);
                break;
            }
        }
        line.push(' ');
    }
    let line = line.strip_prefix("ExecStart=").expect("an ExecStart= line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// The first container's `args:` list of the manifest (one `- item` per line).
fn container_args(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect()
}

/// Starts `args` (a `vicinity` command line as packaged) with `(from, to)` replacements in
/// each argument, the packaged files in `dir` (named as `names` says: the API keys file, the
/// server certificate, its key, the client CA), the stores on a private Redis given by the
/// variables the packaging sets from its secrets; then checks the probes and one call over
/// mutual TLS.
fn serves_as_packaged(args: &[String], replace: &[(&str, String)], dir: &Path, names: [&str; 4]) {
    let pki = crate::tls::Pki::new("packaged");
    let files = pki.write(&dir.join("client"));
    let key = "packaged-app-key-0123456789abcdef";
    write_the_packaged_secret_files(&pki, dir, names, key);
    let (grpc, metrics) = (free_port(), free_port());
    let args = on_the_tests_ports(args, replace, grpc, metrics);
    let redis = RedisServer::start().expect("redis");
    let mut command = vicinity();
    command
        .args(&args)
        .env("VICINITY_REDIS_URL", redis.url())
        .env("VICINITY_CONSENT_REDIS_URL", redis.url())
        .env("VICINITY_ORDER_SECRET", "ab".repeat(32))
        .env("RUST_LOG", "info");
    let mut served = Served::spawn(command, grpc);
    served.addr = format!("https://127.0.0.1:{grpc}");
    served.client_args = client_args_with_certificate_and_key(&files, key);
    served.wait_until_serving();
    assert_the_probes_and_a_call_are_answered_over_mutual_tls(&mut served, metrics);
}

/// Writes the API keys file (with `key`), the server certificate, its key and the client CA
/// of `pki` into `dir`, named as `names` says.
fn write_the_packaged_secret_files(pki: &crate::tls::Pki, dir: &Path, names: [&str; 4], key: &str) {
    let [keys, cert, server_key, client_ca] = names;
    fs::write(dir.join(keys), format!("backend app,ops {key}\n")).expect("write");
    fs::write(dir.join(cert), &pki.server.0).expect("write");
    fs::write(dir.join(server_key), &pki.server.1).expect("write");
    fs::write(dir.join(client_ca), &pki.ca).expect("write");
}

/// `args` with the `replace` pairs applied, and the packaged ports moved to `grpc` and
/// `metrics`.
fn on_the_tests_ports(
    args: &[String],
    replace: &[(&str, String)],
    grpc: u16,
    metrics: u16,
) -> Vec<String> {
    let mut replace = replace.to_vec();
    replace.push((":50051", format!(":{grpc}")));
    replace.push((":9464", format!(":{metrics}")));
    let args: Vec<String> = args
        .iter()
        .map(|arg| {
            replace
                .iter()
                .fold(arg.clone(), |arg, (from, to)| arg.replace(from, to))
        })
        .collect();
    assert!(
        args.iter().any(|a| a.contains(&format!(":{grpc}")))
            && args.iter().any(|a| a.contains(&format!(":{metrics}"))),
        "the packaged ports moved: {args:?}"
    );
    args
}

/// Client flags with the CA, client certificate and key in `files`, and the API `key`.
fn client_args_with_certificate_and_key(files: &Path, key: &str) -> Vec<String> {
    let file = |name: &str| files.join(name).display().to_string();
    vec![
        "--ca-cert".into(),
        file("ca.pem"),
        "--client-cert".into(),
        file("client.pem"),
        "--client-key".into(),
        file("client.key"),
        "--api-key".into(),
        key.into(),
    ]
}

/// The probes on `metrics` answer 200 and a grant passes; without its client certificate
/// the client is refused.
fn assert_the_probes_and_a_call_are_answered_over_mutual_tls(served: &mut Served, metrics: u16) {
    let probes = SocketAddr::from(([127, 0, 0, 1], metrics));
    assert_eq!(http_status(probes, "/livez").as_deref(), Some("200"));
    assert_eq!(http_status(probes, "/readyz").as_deref(), Some("200"));
    let granted = served.run(&GRANT_ALICE);
    assert!(
        granted.status.success(),
        "{}{}",
        stdout(&granted),
        String::from_utf8_lossy(&granted.stderr)
    );
    // Without a client certificate the gRPC port refuses (mutual TLS, off loopback).
    served.client_args.drain(2..6);
    assert!(
        !served.run(&["health"]).status.success(),
        "{}",
        served.log()
    );
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vicinity-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a directory");
    dir
}

#[test]
fn the_systemd_units_command_line_serves_as_shipped() {
    let args = exec_start(&shipped("deploy/systemd/vicinity.service"));
    let (program, args) = args.split_first().expect("a program");
    assert_eq!(program, "/usr/local/bin/vicinity");
    let dir = scratch("systemd");
    // `%d` is the credentials directory (LoadCredential=).
    let credentials = format!("{}/", dir.display());
    serves_as_packaged(
        args,
        &[("%d/", credentials)],
        &dir,
        ["api-keys", "tls.crt", "tls.key", "client-ca.crt"],
    );
}

#[test]
fn the_kubernetes_containers_arguments_serve_as_shipped() {
    let args = container_args(&shipped("deploy/kubernetes/vicinity.yaml"));
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    let dir = scratch("kubernetes");
    let mounted = format!("{}/", dir.display());
    serves_as_packaged(
        &args,
        &[
            ("/etc/vicinity/config/", mounted.clone()),
            ("/etc/vicinity/tls/", mounted),
        ],
        &dir,
        ["api-keys", "tls.crt", "tls.key", "client-ca.crt"],
    );
}

/// `systemd-analyze verify` takes the unit as shipped (its binary swapped for the one built)
/// without a word, where systemd is installed (scripts/test installs it on Debian).
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: scripts/test installs it (Debian systemd)");
        return;
    };
    assert!(version.status.success());
    let dir = scratch("systemd-verify");
    let unit = shipped("deploy/systemd/vicinity.service")
        .replace("/usr/local/bin/vicinity", env!("CARGO_BIN_EXE_vicinity"));
    let path = dir.join("vicinity.service");
    fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
