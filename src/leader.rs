//! Leader election on a Lease: only the replica that holds it runs the controllers.

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;

use crate::controller::Shutdown;

/// Name, holder identity and timing of the leader Lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Holder identity written into the Lease, unique per replica.
    pub identity: String,
    /// Seconds a Lease stays valid without renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews it.
    pub grace_seconds: u64,
}

/// Failure of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to set up the Lease {name:?} in namespace {namespace:?}")]
    Setup {
        name: String,
        namespace: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },

    #[error(
        "lost the Lease while leading, so this replica stopped to let the new leader work alone"
    )]
    LostLease,
}

/// Waits for the Lease, then runs `work` until `shutdown` turns true or the Lease is lost.
/// The replica is ready while it waits, so a standby replica passes its readiness probe.
/// Returns `LeaderError::LostLease` after a loss, so the process exits and restarts as a
/// standby.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    lease: LeaseSettings,
    shutdown: Shutdown,
    ready: Arc<watch::Sender<bool>>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.grace_seconds)
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .build()
        .await
        .map_err(|source| setup_error(&lease, source))?;
    let (mut leading, lease_task) = manager.watch().await;
    let _ = ready.send(true);

    tracing::info!(lease = %lease.name, identity = %lease.identity, "waiting for the Lease");
    if !wait_for_lease(&mut leading, shutdown.clone()).await {
        return Ok(());
    }
    tracing::info!(lease = %lease.name, "acquired the Lease, starting controllers");

    let (stop, lost) = stop_on_loss_or_shutdown(leading, shutdown);
    let result = work(stop).await;
    let lost = lost.await.unwrap_or(false);
    // Dropping the last receiver makes the Lease task release the Lease; wait for that.
    let _ = lease_task.await;
    result?;
    if lost {
        return Err(LeaderError::LostLease.into());
    }
    Ok(())
}

fn setup_error(
    lease: &LeaseSettings,
    source: kube_lease_manager::LeaseManagerError,
) -> LeaderError {
    LeaderError::Setup {
        name: lease.name.clone(),
        namespace: lease.namespace.clone(),
        source,
    }
}

/// Returns true once this replica holds the Lease, or false on shutdown first.
async fn wait_for_lease(leading: &mut watch::Receiver<bool>, mut shutdown: Shutdown) -> bool {
    tokio::select! {
        held = leading.wait_for(|held| *held) => held.is_ok(),
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

/// Returns a flag that turns true on shutdown or when the Lease is lost, and a task that
/// reports whether the Lease was lost.
fn stop_on_loss_or_shutdown(
    mut leading: watch::Receiver<bool>,
    mut shutdown: Shutdown,
) -> (Shutdown, tokio::task::JoinHandle<bool>) {
    let (sender, receiver) = watch::channel(false);
    let task = tokio::spawn(async move {
        let lost = tokio::select! {
            _ = leading.wait_for(|held| !*held) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        if lost {
            tracing::warn!("lost the Lease, stopping controllers");
        }
        let _ = sender.send(true);
        lost
    });
    (receiver, task)
}
