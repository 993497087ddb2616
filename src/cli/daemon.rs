//! `ripcord daemon --config FILE`: the long-running server (HTTP API, Alertmanager webhook,
//! status page, drills, leader election). Every setting is a flag and a `RIPCORD_*`
//! environment variable; flags win over the config file.

use crate::cli::{Exit, GlobalArgs};
use crate::daemon::config::{self, DaemonConfig};
use crate::daemon::server::{self, ElectionSettings, Settings, TokenSource};
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `ripcord daemon`.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// The daemon configuration file (alert rules, drills, Prometheus, notifications).
    #[arg(long, env = "RIPCORD_DAEMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen address.
    #[arg(long, env = "RIPCORD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Bearer tokens file (`NAME TOKEN` per line; re-read when it changes).
    #[arg(long, env = "RIPCORD_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Directory of extra playbooks (`NAME.yaml`), searched before the built-in ones.
    #[arg(long, env = "RIPCORD_PLAYBOOKS_DIR", value_name = "DIR")]
    pub playbooks_dir: Option<PathBuf>,

    /// Prometheus base URL (guards, drill error-budget gates).
    #[arg(long, env = "RIPCORD_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// Request body limit in bytes.
    #[arg(long, env = "RIPCORD_BODY_LIMIT_BYTES", value_name = "BYTES")]
    pub body_limit_bytes: Option<usize>,

    /// This replica's identity for leader election (default: $POD_NAME or the host name, plus
    /// the process id).
    #[arg(long, env = "RIPCORD_IDENTITY", value_name = "NAME")]
    pub identity: Option<String>,

    /// Leader election on/off (off: this process always leads; only for one replica).
    #[arg(long, env = "RIPCORD_LEADER_ELECTION", value_name = "BOOL")]
    pub leader_election: Option<bool>,

    /// Serve the status page at `/` without a token.
    #[arg(long, env = "RIPCORD_PUBLIC_STATUS_PAGE")]
    pub public_status_page: bool,

    /// Kubeconfig whose contexts playbook steps with `context:` may name (default: the
    /// `--kubeconfig` given; neither: such steps are refused).
    #[arg(long, env = "RIPCORD_STEP_KUBECONFIG", value_name = "FILE")]
    pub step_kubeconfig: Option<PathBuf>,

    /// The key sealing the daemon's `Run` resources (at least 32 bytes; from the daemon's
    /// Secret). Without it no unfinished run is taken over from the cluster.
    #[arg(long, env = "RIPCORD_RUN_KEY_FILE", value_name = "FILE")]
    pub run_key_file: Option<PathBuf>,

    /// Log format on stderr: `text`, or `json` (one object per line, for log collectors).
    /// The daemon logs at info by default (`-v` debug, `RUST_LOG` overrides).
    #[arg(long, env = "RIPCORD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Resolves flags over the config file.
pub fn settings(
    args: &DaemonArgs,
    global: &GlobalArgs,
    file: DaemonConfig,
) -> anyhow::Result<(Settings, String)> {
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "0.0.0.0:8080".to_string());
    let state_dir = global
        .state_dir
        .clone()
        .or(file.state_dir.clone())
        .unwrap_or_else(|| global.state_dir());
    let tokens_file = args
        .tokens_file
        .clone()
        .or(file.tokens_file.clone())
        .context("no API tokens: give --tokens-file / RIPCORD_TOKENS_FILE (one token per line)")?;
    let namespace = global
        .namespace
        .clone()
        .or(file.namespace.clone())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "default".to_string());
    let election_enabled = args.leader_election.unwrap_or(file.leader_election.enabled);
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let settings = Settings {
        state_dir,
        tokens: TokenSource::File(tokens_file),
        namespace,
        playbooks_dir: args.playbooks_dir.clone().or(file.playbooks_dir.clone()),
        body_limit: args
            .body_limit_bytes
            .or(file.body_limit_bytes)
            .unwrap_or(1024 * 1024),
        who: file
            .who
            .clone()
            .unwrap_or_else(|| "ripcord-daemon".to_string()),
        call_timeout: file
            .call_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10)),
        prometheus_url: args
            .prometheus_url
            .clone()
            .or(file.prometheus.as_ref().map(|p| p.url.clone())),
        notify: file.notify.channels.clone(),
        notify_required: file.notify.required,
        election: election_enabled.then(|| ElectionSettings {
            lease_name: file.leader_election.lease_name.clone(),
            lease_duration: file.leader_election.lease_duration.0,
            identity,
        }),
        alertmanager: file.alertmanager.clone(),
        drills: file.drills.clone(),
        public_status_page: args.public_status_page || file.public_status_page,
        step_kubeconfig: args
            .step_kubeconfig
            .clone()
            .or(file.step_kubeconfig.clone())
            .or(global.kubeconfig.clone()),
        trust: server::TrustSettings {
            token_scopes: file.tokens.clone(),
            run_key: args
                .run_key_file
                .clone()
                .or(file.run_key_file.clone())
                .map(|path| crate::k8s::runs::RunSeal::from_file(&path).map(std::sync::Arc::new))
                .transpose()?,
            http: file.http.limits(),
        },
    };
    Ok((settings, listen))
}

fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ripcord".to_string());
    format!("{host}-{}", std::process::id())
}

/// Runs the daemon until SIGTERM / Ctrl-C.
pub async fn run(args: DaemonArgs, global: GlobalArgs) -> anyhow::Result<Exit> {
    let file = match &args.config {
        Some(path) => config::load(path)
            .map_err(|e| crate::cli::exit::with_exit(Exit::Usage, anyhow::Error::new(e)))?,
        None => DaemonConfig::default(),
    };
    let (settings, listen) = settings(&args, &global, file)?;
    let client = crate::cli::run::kube_client(&global).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        tx.send_replace(true);
    });
    server::serve(settings, client, listener, rx).await?;
    Ok(Exit::Ok)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> (DaemonArgs, GlobalArgs) {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            crate::cli::Command::Daemon(args) => (args, cli.global),
            other => panic!("not the daemon: {other:?}"),
        }
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let file = config::parse(
            "d.yaml",
            "listen: 0.0.0.0:9000\ntokensFile: /file/tokens\nnamespace: from-file\nbodyLimitBytes: 2048\nleaderElection: {enabled: true, leaseDuration: 20s}\nprometheus: {url: http://file:9090}\n",
        )
        .unwrap();
        let (args, global) = parse(&[
            "ripcord",
            "daemon",
            "--listen",
            "127.0.0.1:1",
            "--tokens-file",
            "/flag/tokens",
            "--leader-election",
            "false",
            "-n",
            "ops",
        ]);
        let (resolved, listen) = settings(&args, &global, file.clone()).unwrap();
        assert_eq!(listen, "127.0.0.1:1");
        assert!(
            matches!(&resolved.tokens, TokenSource::File(p) if p == std::path::Path::new("/flag/tokens"))
        );
        assert_eq!(resolved.namespace, "ops");
        assert!(resolved.election.is_none());
        assert_eq!(resolved.body_limit, 2048);
        assert_eq!(resolved.prometheus_url.as_deref(), Some("http://file:9090"));

        let (args, global) = parse(&["ripcord", "daemon", "--identity", "pod-1"]);
        let (resolved, listen) = settings(&args, &global, file).unwrap();
        assert_eq!(listen, "0.0.0.0:9000");
        assert_eq!(resolved.namespace, "from-file");
        let election = resolved.election.unwrap();
        assert_eq!(election.identity, "pod-1");
        assert_eq!(election.lease_duration, Duration::from_secs(20));

        let file = config::parse("d.yaml", "tokensFile: /t\nstepKubeconfig: /file/kc\n").unwrap();
        let (args, global) = parse(&["ripcord", "daemon", "--kubeconfig", "/global/kc"]);
        let (resolved, _) = settings(&args, &global, file.clone()).unwrap();
        assert_eq!(
            resolved.step_kubeconfig.as_deref(),
            Some(std::path::Path::new("/file/kc"))
        );
        let (args, global) = parse(&["ripcord", "daemon", "--step-kubeconfig", "/flag/kc"]);
        let (resolved, _) = settings(&args, &global, file).unwrap();
        assert_eq!(
            resolved.step_kubeconfig.as_deref(),
            Some(std::path::Path::new("/flag/kc"))
        );
        // Without a step kubeconfig, the daemon's own `--kubeconfig` lends its contexts.
        let file = config::parse("d.yaml", "tokensFile: /t\n").unwrap();
        let (args, global) = parse(&["ripcord", "daemon", "--kubeconfig", "/global/kc"]);
        let (resolved, _) = settings(&args, &global, file).unwrap();
        assert_eq!(
            resolved.step_kubeconfig.as_deref(),
            Some(std::path::Path::new("/global/kc"))
        );
    }

    #[test]
    fn tokens_are_required() {
        let (args, global) = parse(&["ripcord", "daemon"]);
        let err = settings(&args, &global, DaemonConfig::default()).unwrap_err();
        assert!(err.to_string().contains("RIPCORD_TOKENS_FILE"), "{err}");
    }
}
