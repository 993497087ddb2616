//! Leases: per-target locks through coordination.k8s.io Leases.
//!
//! A playbook's `lock` string (e.g. `deployment/shop/checkout`) maps to the Lease
//! `ripcord-lock-<hash>` in the lock namespace ([`lock_namespace`]: the configured one — the
//! daemon's own namespace for the daemon, `--lock-namespace` for the CLI — else the target
//! namespace), held by the run id. Two runs on the same
//! target cannot mutate at once: the second is refused with the holder's run id. The holder
//! renews the Lease while it runs; a crashed holder's Lease expires after its duration, and a
//! resumed run (same run id) takes its own Lease back at once. [`acquire_waiting`] waits a
//! bounded time for a held lock (`--wait-lock`). The engine's cluster-wide fleet lock is one
//! such lock (lock string `fleet`, in the lock namespace or `default`; see `engine/guards.rs`).

use crate::model::FIELD_MANAGER;
use crate::retry::{self, Stopped};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The annotation holding the lock string the Lease stands for (names are hashed).
pub const LOCK_ANNOTATION: &str = "ripcord.dev/lock";

/// The namespace of a lock Lease: `configured` (the daemon's namespace, or the CLI's
/// `--lock-namespace`), else the run's target namespace.
pub fn lock_namespace<'a>(configured: Option<&'a str>, target: &'a str) -> &'a str {
    configured.filter(|ns| !ns.is_empty()).unwrap_or(target)
}

/// Why taking or keeping a lock failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds the lock.
    #[error(
        "{lock} is locked by run {holder} (lease {namespace}/{lease}, expires in {expires_in_s}s unless renewed)"
    )]
    Held {
        /// The lock string.
        lock: String,
        /// The holder's run id.
        holder: String,
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        lease: String,
        /// Seconds until the Lease expires if its holder stops renewing.
        expires_in_s: i64,
    },
    /// An API call failed.
    #[error("{operation} lease {namespace}/{lease} failed")]
    Api {
        /// `get`, `create`, `replace`, `renew`, `delete`.
        operation: &'static str,
        /// The namespace.
        namespace: String,
        /// The Lease's name.
        lease: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{operation} lease {namespace}/{lease} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The namespace.
        namespace: String,
        /// The Lease's name.
        lease: String,
        /// The bound.
        after: Duration,
    },
}

impl LeaseError {
    /// A stable category for journal records and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            LeaseError::Held { .. } => "locked",
            LeaseError::Api { .. } => "api",
            LeaseError::Timeout { .. } => "timeout",
        }
    }

    /// True for errors worth another attempt: a conflict (re-read), throttling, a server
    /// error or a call that did not answer in time.
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Held { .. } => false,
            LeaseError::Timeout { .. } => true,
            LeaseError::Api { source, .. } => match source {
                kube::Error::Api(status) => {
                    status.code == 409 || status.code == 429 || status.code >= 500
                }
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
        }
    }
}

/// The Lease name for a lock string: `ripcord-lock-<16 hex digits of FNV-1a 64>` (stable
/// across versions and machines).
pub fn lease_name(lock: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in lock.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("ripcord-lock-{hash:016x}")
}

/// A held lock. Renewed in the background until [`LockGuard::release`] (or drop, which stops
/// renewing and lets the Lease expire).
///
/// Renewal is conditional: it re-reads the Lease and renews only while `holderIdentity` is
/// still this run, with the read `resourceVersion` as precondition. When another holder took
/// the Lease (ours expired and someone acquired it), renewal stops, the Lease is left as it is,
/// and [`LockGuard::lost`] names the new holder.
pub struct LockGuard {
    client: kube::Client,
    namespace: String,
    lease: String,
    holder: String,
    call_timeout: Duration,
    renew: tokio::task::JoinHandle<()>,
    lost: watch::Receiver<Option<String>>,
    /// The Lease's resourceVersion as this run last wrote it (create, take-over, renewal):
    /// the precondition of the delete on release, so release needs no read.
    written_version: Arc<Mutex<Option<String>>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

// === impl LockGuard ===

impl LockGuard {
    /// The Lease's name.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// The holder that took the lock from this run, once renewal found the Lease held by
    /// someone else (or deleted: [`LEASE_DELETED`]; holder cleared: [`LEASE_CLEARED`]). `None`
    /// while the lock is ours.
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// A receiver that changes to `Some(holder)` when the lock is lost (see
    /// [`LockGuard::lost`]); `changed()` on it ends with an error once renewal has stopped
    /// for good (the renewal task ended after the loss, or the guard was released or dropped):
    /// no renewal request follows that.
    pub fn lost_signal(&self) -> watch::Receiver<Option<String>> {
        self.lost.clone()
    }

    /// Stops renewing and deletes the Lease (if this run still holds it).
    ///
    /// One request in the usual case: a delete conditional on the resourceVersion this run
    /// last wrote, which only succeeds while the Lease is exactly as this run left it (so
    /// still held by it). A 409 (someone wrote it since, or a renewal was cut short) falls
    /// back to reading it and deleting only if this run still holds it.
    pub async fn release(self) -> Result<(), LeaseError> {
        self.renew.abort();
        let written = self
            .written_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        if let Some(version) = written {
            match delete_at_version(
                &self.client,
                &self.namespace,
                &self.lease,
                version,
                self.call_timeout,
            )
            .await?
            {
                Deleted::Done => return Ok(()),
                Deleted::Changed => {}
            }
        }
        delete_if_held(
            &self.client,
            &self.namespace,
            &self.lease,
            &self.holder,
            self.call_timeout,
        )
        .await
    }
}

/// The holder [`LockGuard::lost`] reports when the Lease was deleted under a running holder.
pub const LEASE_DELETED: &str = "nobody (the Lease was deleted)";

/// The holder [`LockGuard::lost`] reports when someone cleared the Lease's `holderIdentity`.
pub const LEASE_CLEARED: &str = "nobody (the Lease's holder was cleared)";

/// Deletes the Lease of `lock` if `holder` holds it (a resumed run cleaning up the Lease its
/// crashed predecessor left behind). Nothing happens otherwise.
pub async fn release_if_held(
    client: &kube::Client,
    namespace: &str,
    lock: &str,
    holder: &str,
    call_timeout: Duration,
) -> Result<(), LeaseError> {
    delete_if_held(client, namespace, &lease_name(lock), holder, call_timeout).await
}

/// What a conditional delete found.
enum Deleted {
    /// Deleted, or already gone.
    Done,
    /// The Lease changed since `version` (409): nothing deleted.
    Changed,
}

/// Deletes the Lease if its resourceVersion is still `version`.
async fn delete_at_version(
    client: &kube::Client,
    namespace: &str,
    lease: &str,
    version: String,
    call_timeout: Duration,
) -> Result<Deleted, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some(version),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match call(
        "delete",
        namespace,
        lease,
        call_timeout,
        api.delete(lease, &params),
    )
    .await
    {
        Ok(_) => Ok(Deleted::Done),
        Err(LeaseError::Api {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 404 => Ok(Deleted::Done),
        Err(err) if is_conflict(&err) => Ok(Deleted::Changed),
        Err(err) => Err(err),
    }
}

async fn delete_if_held(
    client: &kube::Client,
    namespace: &str,
    lease: &str,
    holder: &str,
    call_timeout: Duration,
) -> Result<(), LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let current = call("get", namespace, lease, call_timeout, api.get_opt(lease)).await?;
    let Some(current) = current else {
        return Ok(());
    };
    if holder_of(&current) != Some(holder) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: current.metadata.resource_version.clone().map(|rv| {
            kube::api::Preconditions {
                resource_version: Some(rv),
                uid: None,
            }
        }),
        ..DeleteParams::default()
    };
    match tokio::time::timeout(call_timeout, api.delete(lease, &params)).await {
        Err(_) => Err(LeaseError::Timeout {
            operation: "delete",
            namespace: namespace.to_string(),
            lease: lease.to_string(),
            after: call_timeout,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => Ok(()),
        Ok(Err(source)) => Err(LeaseError::Api {
            operation: "delete",
            namespace: namespace.to_string(),
            lease: lease.to_string(),
            source,
        }),
    }
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// Seconds until the Lease expires (negative: expired).
fn expires_in(lease: &Lease, now: jiff::Timestamp) -> i64 {
    let Some(spec) = lease.spec.as_ref() else {
        return -1;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    renewed + duration - now.as_second()
}

/// [`LeaseError::Held`] when a live holder other than `holder` has `lease` (of `lock`, in
/// `namespace`) at `now`; `None` when it is free, expired or `holder`'s own.
fn held_by_other(
    lease: &Lease,
    lock: &str,
    namespace: &str,
    holder: &str,
    now: jiff::Timestamp,
) -> Option<LeaseError> {
    let current = holder_of(lease)?;
    let left = expires_in(lease, now);
    (current != holder && left >= 0).then(|| LeaseError::Held {
        lock: lock.to_string(),
        holder: current.to_string(),
        namespace: namespace.to_string(),
        lease: lease.metadata.name.clone().unwrap_or_default(),
        expires_in_s: left,
    })
}

/// A new Lease `namespace/name` held by `holder` from `now` for `duration_s` seconds.
fn new_lease(
    namespace: &str,
    name: &str,
    holder: &str,
    duration_s: i32,
    now: jiff::Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "ripcord".to_string(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(duration_s),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

async fn call<T>(
    operation: &'static str,
    namespace: &str,
    lease: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(LeaseError::Timeout {
            operation,
            namespace: namespace.to_string(),
            lease: lease.to_string(),
            after: timeout,
        }),
        Ok(Err(source)) => Err(LeaseError::Api {
            operation,
            namespace: namespace.to_string(),
            lease: lease.to_string(),
            source,
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

/// Takes the lock `lock` for `holder` (a run id): creates the Lease, or takes it over when it
/// is free, expired or already held by `holder`. Refuses with [`LeaseError::Held`] otherwise.
/// The Lease is renewed every `ttl / 3` until released.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    lock: &str,
    holder: &str,
    ttl: Duration,
    call_timeout: Duration,
) -> Result<LockGuard, LeaseError> {
    let name = lease_name(lock);
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let ttl_s = i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX);
    let post = post_params();
    // The first attempt creates without reading (the usual case: no Lease); only its 409 (the
    // Lease exists) reads it, at once, in the same attempt. A create/replace race (409) after a
    // read, throttling (429), server errors (5xx) and calls that time out are retried with
    // backoff (`retry::api_call`). Only a live Lease of another holder refuses.
    let first = std::sync::atomic::AtomicBool::new(true);
    let take = || async {
        let mut blind = first.swap(false, std::sync::atomic::Ordering::Relaxed);
        loop {
            let now = jiff::Timestamp::now();
            let existing = if blind {
                None
            } else {
                call("get", namespace, &name, call_timeout, api.get_opt(&name)).await?
            };
            let result = match existing {
                None => {
                    let mut lease = new_lease(namespace, &name, holder, ttl_s, now);
                    lease.metadata.annotations =
                        Some([(LOCK_ANNOTATION.to_string(), lock.to_string())].into());
                    tokio::time::timeout(call_timeout, api.create(&post, &lease)).await
                }
                Some(mut lease) => {
                    if let Some(held) = held_by_other(&lease, lock, namespace, holder, now) {
                        return Err(held);
                    }
                    let current = holder_of(&lease).map(str::to_string);
                    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                    if current.as_deref() != Some(holder) {
                        spec.acquire_time = Some(MicroTime(now));
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.holder_identity = Some(holder.to_string());
                    spec.lease_duration_seconds = Some(ttl_s);
                    spec.renew_time = Some(MicroTime(now));
                    // resourceVersion stays set: a concurrent taker makes this a 409.
                    tokio::time::timeout(call_timeout, api.replace(&name, &post, &lease)).await
                }
            };
            return match result {
                Err(_) => Err(LeaseError::Timeout {
                    operation: "take",
                    namespace: namespace.to_string(),
                    lease: name.clone(),
                    after: call_timeout,
                }),
                // The Lease exists: read it now and decide (free, expired, ours, or held).
                Ok(Err(kube::Error::Api(status))) if blind && status.code == 409 => {
                    blind = false;
                    continue;
                }
                Ok(Err(source)) => Err(LeaseError::Api {
                    operation: "take",
                    namespace: namespace.to_string(),
                    lease: name.clone(),
                    source,
                }),
                Ok(Ok(written)) => Ok(written),
            };
        }
    };
    let last_error = match retry::retry(
        &retry::api_call(),
        take,
        LeaseError::is_transient,
        retry::never(),
        |_, _| {},
    )
    .await
    {
        Ok(written) => {
            let (lost_tx, lost) = watch::channel(None);
            let written_version = Arc::new(Mutex::new(written.metadata.resource_version));
            let renew = tokio::spawn(renew_loop(
                api.clone(),
                name.clone(),
                holder.to_string(),
                ttl,
                call_timeout,
                lost_tx,
                written_version.clone(),
            ));
            tracing::info!(lock = %lock, lease = %name, holder = %holder, "lock acquired");
            return Ok(LockGuard {
                client: client.clone(),
                namespace: namespace.to_string(),
                lease: name,
                holder: holder.to_string(),
                call_timeout,
                renew,
                lost,
                written_version,
            });
        }
        Err(Stopped::Failed(err)) if !err.is_transient() => return Err(err),
        Err(Stopped::Failed(err)) => err,
        // `never` does not cancel.
        Err(Stopped::Cancelled) => LeaseError::Timeout {
            operation: "take",
            namespace: namespace.to_string(),
            lease: name.clone(),
            after: call_timeout,
        },
    };
    // Out of attempts. If another run took the lock meanwhile, say who; otherwise report the
    // last error as what it was (never a made-up holder).
    if let Ok(Some(lease)) = call("get", namespace, &name, call_timeout, api.get_opt(&name)).await
        && let Some(held) = held_by_other(&lease, lock, namespace, holder, jiff::Timestamp::now())
    {
        return Err(held);
    }
    Err(last_error)
}

/// How often [`acquire_waiting`] looks at a held Lease again (its holder may release it before
/// it expires).
const WAIT_POLL: Duration = Duration::from_millis(200);

/// As [`acquire`], but while another run holds the lock, waits up to `wait` for it to be
/// released or to expire (a holder that was SIGKILLed stops renewing), looking again every
/// 200 ms. `wait` zero: refuses at once, like [`acquire`]. Refuses with [`LeaseError::Held`]
/// (the holder and how long its Lease has left) when the wait is over. A lock held by a live
/// run in another namespace (a CLI run locking in the target's namespace while this daemon
/// locks in its own, or the other way round) counts as held too: see `held_elsewhere`.
pub async fn acquire_waiting(
    client: &kube::Client,
    namespace: &str,
    lock: &str,
    holder: &str,
    ttl: Duration,
    call_timeout: Duration,
    wait: Duration,
) -> Result<LockGuard, LeaseError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut reported = false;
    loop {
        let taken = match acquire(client, namespace, lock, holder, ttl, call_timeout).await {
            Ok(guard) => {
                match held_elsewhere(client, lock, holder, call_timeout).await {
                    None => Ok(guard),
                    Some(held) => {
                        // Step back so that the other run (which may be doing the same check)
                        // keeps its lock; look again as for any held lock.
                        if let Err(err) = guard.release().await {
                            tracing::warn!(lock = %lock, error = %crate::errors::error_chain(&err),
                                       "cannot give back the lock held elsewhere; it expires");
                        }
                        Err(held)
                    }
                }
            }
            Err(err) => Err(err),
        };
        match taken {
            Err(LeaseError::Held {
                holder: current,
                expires_in_s,
                ..
            }) if tokio::time::Instant::now() < deadline => {
                if !reported {
                    reported = true;
                    tracing::info!(lock = %lock, holder = %current, expires_in_s, wait_s = wait.as_secs(), "lock held: waiting");
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(WAIT_POLL.min(left)).await;
            }
            other => return other,
        }
    }
}

/// The Leases of `lock` in every namespace (one list by name). A Lease whose
/// `ripcord.dev/lock` annotation names another lock (a name-hash collision) is left out; one
/// without the annotation (written by an older build) is kept.
pub async fn lock_leases_anywhere(
    client: &kube::Client,
    lock: &str,
    call_timeout: Duration,
) -> Result<Vec<Lease>, LeaseError> {
    let name = lease_name(lock);
    let api: Api<Lease> = Api::all(client.clone());
    let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    let found = call("list", "*", &name, call_timeout, api.list(&params)).await?;
    Ok(found
        .items
        .into_iter()
        .filter(|lease| {
            lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LOCK_ANNOTATION))
                .is_none_or(|l| l == lock)
        })
        .collect())
}

/// A live holder of `lock`, other than `holder`, in any namespace (`None`: nobody else
/// holds it anywhere), from [`lock_leases_anywhere`].
pub async fn live_holder_anywhere(
    client: &kube::Client,
    lock: &str,
    holder: &str,
    call_timeout: Duration,
) -> Result<Option<LeaseError>, LeaseError> {
    let now = jiff::Timestamp::now();
    Ok(lock_leases_anywhere(client, lock, call_timeout)
        .await?
        .iter()
        .find_map(|lease| {
            let namespace = lease.metadata.namespace.as_deref().unwrap_or_default();
            held_by_other(lease, lock, namespace, holder, now)
        }))
}

/// A live holder of the same lock in another namespace than the one this run just locked in
/// (where it holds the Lease itself), as [`LeaseError::Held`]. Runs lock where they are told (`--lock-namespace`, the daemon's
/// namespace) or in the target's namespace, so the same target can be locked in two places:
/// a CLI run in `shop`, a daemon run in `ripcord`. Each run, once its own Lease is written,
/// looks for the lock's Lease in every namespace (one list by name); of two runs racing, at
/// least one sees the other (each writes before it reads) and steps back. A list it may not
/// make (403) or that fails is logged and does not refuse the run: its own Lease still
/// excludes every run that locks in the same place.
async fn held_elsewhere(
    client: &kube::Client,
    lock: &str,
    holder: &str,
    call_timeout: Duration,
) -> Option<LeaseError> {
    match live_holder_anywhere(client, lock, holder, call_timeout).await {
        // This run holds the one in `namespace`: any other live holder is elsewhere.
        Ok(held) => held,
        Err(err) => {
            tracing::info!(lock = %lock, error = %crate::errors::error_chain(&err),
                           "cannot look for the lock in other namespaces; relying on its own Lease");
            None
        }
    }
}

// === leader election ===

/// One leader-election round on the Lease `name` for `identity`: creates the Lease, renews it
/// while `identity` holds it, or takes it over once its holder has not renewed it for its
/// whole duration. Every write is conditional (create, or replace with the read
/// `resourceVersion`): of two contenders racing, one gets a 409 and this returns `Ok(false)`.
/// `Ok(true)`: `identity` holds the Lease afterwards.
pub async fn try_acquire_or_renew(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
    call_timeout: Duration,
) -> Result<bool, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let post = post_params();
    let now = jiff::Timestamp::now();
    let duration_s = duration_secs(duration);
    let existing = call("get", namespace, name, call_timeout, api.get_opt(name)).await?;
    let Some(lease) = existing else {
        let lease = new_lease(namespace, name, identity, duration_s, now);
        return match call(
            "create",
            namespace,
            name,
            call_timeout,
            api.create(&post, &lease),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        };
    };
    take_or_renew(
        &api,
        namespace,
        name,
        identity,
        duration,
        call_timeout,
        lease,
    )
    .await
}

/// The second half of [`try_acquire_or_renew`] and [`claim`]: renews the read `lease` when
/// `identity` holds it, takes it over when its holder let it expire, else `Ok(false)`.
async fn take_or_renew(
    api: &Api<Lease>,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
    call_timeout: Duration,
    mut lease: Lease,
) -> Result<bool, LeaseError> {
    let now = jiff::Timestamp::now();
    let duration_s = duration_secs(duration);
    let holder = holder_of(&lease).map(str::to_string);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if holder.as_deref() != Some(identity) {
        let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
        let lease_s = i64::from(spec.lease_duration_seconds.unwrap_or(duration_s));
        let expired = match (holder.as_deref(), renewed) {
            (None, _) | (_, None) => true,
            (Some(_), Some(renewed)) => now.as_second() - renewed.0.as_second() >= lease_s,
        };
        if !expired {
            return Ok(false);
        }
        spec.holder_identity = Some(identity.to_string());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        tracing::info!(
            lease = %name,
            identity = %identity,
            previous = holder.as_deref().unwrap_or("nobody"),
            "taking over the expired lease"
        );
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_s);
    replace_if_unchanged(api, namespace, name, &lease, call_timeout).await
}

/// The answer of [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// `identity` holds the Lease now.
    Taken,
    /// Someone else holds it and has renewed it within its duration (`None`: a 409 raced
    /// with another contender, holder unknown).
    Held(Option<String>),
}

/// Claims the Lease `name` for `identity` for `duration`, for a caller that expects the Lease
/// not to exist (an alert's first firing for a target): creates it first, so that the common
/// case is one request, and only on a 409 reads it to take it over when expired (as
/// [`try_acquire_or_renew`]) or to say who holds it. Every write is conditional.
pub async fn claim(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
    call_timeout: Duration,
) -> Result<Claim, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let post = post_params();
    let duration_s = duration_secs(duration);
    let lease = new_lease(
        namespace,
        name,
        identity,
        duration_s,
        jiff::Timestamp::now(),
    );
    match call(
        "create",
        namespace,
        name,
        call_timeout,
        api.create(&post, &lease),
    )
    .await
    {
        Ok(_) => return Ok(Claim::Taken),
        Err(err) if is_conflict(&err) => {}
        Err(err) => return Err(err),
    }
    let Some(existing) = call("get", namespace, name, call_timeout, api.get_opt(name)).await?
    else {
        // Deleted between the two calls: whoever deleted it may be claiming it again.
        return Ok(Claim::Held(None));
    };
    let holder = holder_of(&existing).map(str::to_string);
    if take_or_renew(
        &api,
        namespace,
        name,
        identity,
        duration,
        call_timeout,
        existing,
    )
    .await?
    {
        Ok(Claim::Taken)
    } else {
        Ok(Claim::Held(holder))
    }
}

/// Replaces the Lease with `lease`, which carries the resourceVersion it was read at: `Ok(false)`
/// when a concurrent change made that a 409.
async fn replace_if_unchanged(
    api: &Api<Lease>,
    namespace: &str,
    name: &str,
    lease: &Lease,
    call_timeout: Duration,
) -> Result<bool, LeaseError> {
    let post = post_params();
    match call(
        "replace",
        namespace,
        name,
        call_timeout,
        api.replace(name, &post, lease),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(err) if is_conflict(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Who holds the Lease `name` now (`None`: no Lease, or no holder).
pub async fn current_holder(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    call_timeout: Duration,
) -> Result<Option<String>, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = call("get", namespace, name, call_timeout, api.get_opt(name)).await?;
    Ok(lease.as_ref().and_then(holder_of).map(str::to_string))
}

/// Who holds the Lease `name` now and has renewed it within its duration (`None`: no Lease, no
/// holder, or the holder let it expire — a crashed run).
pub async fn live_holder(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    call_timeout: Duration,
) -> Result<Option<String>, LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = call("get", namespace, name, call_timeout, api.get_opt(name)).await?;
    Ok(lease
        .as_ref()
        .filter(|l| expires_in(l, jiff::Timestamp::now()) >= 0)
        .and_then(holder_of)
        .map(str::to_string))
}

/// Gives up the Lease `name` if `identity` holds it: clears `holderIdentity` and `renewTime`
/// (conditional on the read `resourceVersion`) so the next contender takes it at once. Nothing
/// happens when someone else holds it or it changed meanwhile (409).
pub async fn clear_holder(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    call_timeout: Duration,
) -> Result<(), LeaseError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let Some(mut lease) = call("get", namespace, name, call_timeout, api.get_opt(name)).await?
    else {
        return Ok(());
    };
    if holder_of(&lease) != Some(identity) {
        return Ok(());
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.renew_time = None;
    replace_if_unchanged(&api, namespace, name, &lease, call_timeout)
        .await
        .map(|_| ())
}

// === renewal ===

/// What one renewal round found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Renewal {
    /// `renewTime` was moved forward; the Lease's new resourceVersion.
    Renewed(Option<String>),
    /// The Lease is held by this holder (or [`LEASE_DELETED`], [`LEASE_CLEARED`]); nothing
    /// written.
    Lost(String),
}

/// Renews until the Lease is lost (then reports the new holder on `lost` and ends) or the task
/// is aborted. Failed rounds are logged and retried at the next period.
async fn renew_loop(
    api: Api<Lease>,
    name: String,
    holder: String,
    ttl: Duration,
    call_timeout: Duration,
    lost: watch::Sender<Option<String>>,
    written_version: Arc<Mutex<Option<String>>>,
) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(period).await;
        match renew_once(&api, &name, &holder, call_timeout).await {
            Ok(Renewal::Renewed(version)) => {
                if let Ok(mut v) = written_version.lock() {
                    *v = version;
                }
                tracing::debug!(lease = %name, "lease renewed");
            }
            Ok(Renewal::Lost(taker)) => {
                tracing::error!(
                    lease = %name,
                    holder = %holder,
                    taken_by = %taker,
                    "lock lost: another holder has the lease; renewal stopped"
                );
                lost.send_replace(Some(taker));
                return;
            }
            Err(err) => tracing::warn!(
                lease = %name,
                error = %err,
                category = err.category(),
                "lease renewal failed"
            ),
        }
    }
}

/// One conditional renewal: read the Lease; if `holder` still holds it, move `renewTime` with
/// the read `resourceVersion` as precondition (a 409 re-reads). Never writes a Lease held by
/// someone else.
async fn renew_once(
    api: &Api<Lease>,
    name: &str,
    holder: &str,
    call_timeout: Duration,
) -> Result<Renewal, LeaseError> {
    let namespace = api_namespace(api);
    let post = post_params();
    let renew = || async {
        let current = call("get", &namespace, name, call_timeout, api.get_opt(name)).await?;
        let Some(mut lease) = current else {
            return Ok(Renewal::Lost(LEASE_DELETED.to_string()));
        };
        match holder_of(&lease) {
            Some(current) if current == holder => {}
            Some(other) => return Ok(Renewal::Lost(other.to_string())),
            None => return Ok(Renewal::Lost(LEASE_CLEARED.to_string())),
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        // `lease` carries the resourceVersion just read: a change since then is a 409.
        call(
            "renew",
            &namespace,
            name,
            call_timeout,
            api.replace(name, &post, &lease),
        )
        .await
        .map(|written| Renewal::Renewed(written.metadata.resource_version))
    };
    // A 409 re-reads (`retry::conflict_reread`); anything else waits for the next period.
    retry::retry(
        &retry::conflict_reread(),
        renew,
        is_conflict,
        retry::never(),
        |_, _| {},
    )
    .await
    .map_err(|stopped| match stopped {
        Stopped::Failed(err) => err,
        // `never` does not cancel.
        Stopped::Cancelled => LeaseError::Timeout {
            operation: "renew",
            namespace: namespace.clone(),
            lease: name.to_string(),
            after: call_timeout,
        },
    })
}

fn is_conflict(err: &LeaseError) -> bool {
    matches!(err, LeaseError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
}

fn api_namespace(api: &Api<Lease>) -> String {
    api.namespace().unwrap_or_default().to_string()
}

/// Every Lease write names ripcord's field manager.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// A Lease's `leaseDurationSeconds` for `duration` (at least 1 s).
fn duration_secs(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_stable_and_valid() {
        let a = lease_name("deployment/shop/checkout");
        assert_eq!(a, lease_name("deployment/shop/checkout"));
        assert_ne!(a, lease_name("deployment/shop/cart"));
        assert!(a.starts_with("ripcord-lock-") && a.len() == 29, "{a}");
        // FNV-1a 64 of the empty string.
        assert_eq!(lease_name(""), "ripcord-lock-cbf29ce484222325");
    }

    #[test]
    fn expiry_counts_from_renew_time() {
        let now = jiff::Timestamp::now();
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some("r-1".into()),
                lease_duration_seconds: Some(30),
                renew_time: Some(MicroTime(now - jiff::SignedDuration::from_secs(40))),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert!(expires_in(&lease, now) < 0);
    }
}
