//! Reconcile of one DirectoryConnection: report whether its token Secret and key hold a
//! usable token.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, apply_status};
use crate::crd::{DirectoryConnection, DirectoryConnectionStatus};
use crate::credentials::read_token;
use crate::reason::Reason;
use crate::retry::jittered;
use crate::status::{READY, set_condition, stamp_conditions};
use crate::watches::users_of_connection;

/// Reconciles one DirectoryConnection.
pub async fn reconcile(
    connection: Arc<DirectoryConnection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = connection.namespace().ok_or(Error::MissingNamespace)?;
    let current = connection.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = connection.metadata.generation;

    let reference = &connection.spec.token_secret_ref;
    let token = read_token(&ctx.client, &namespace, reference).await;
    match &token {
        Ok(credentials) => {
            track_token_version(&connection, Some(&credentials.secret_version), &ctx)
        }
        Err(failure) if failure.reason == Reason::CredentialsNotFound => {
            track_token_version(&connection, None, &ctx)
        }
        Err(_) => {}
    }
    match token {
        Ok(_) => {
            let message = format!(
                "token found in Secret {:?} key {:?}",
                reference.name, reference.key
            );
            set_condition(
                &mut status.conditions,
                READY,
                true,
                Reason::UpToDate,
                &message,
            );
        }
        Err(failure) => {
            set_condition(
                &mut status.conditions,
                READY,
                false,
                failure.reason,
                &failure.message,
            );
        }
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    stamp_conditions(&mut status.conditions, connection.metadata.generation, &now);

    if status != current {
        tracing::info!(ready = is_ready(&status), "connection status changed");
        apply_status(&ctx, connection.as_ref(), &status).await?;
    }
    Ok(Action::requeue(jittered(
        ctx.settings.token_recheck_interval,
    )))
}

/// Remembers the token Secret's version and, when it changed since the last check, queues the
/// UserAvatars of this connection, so that uploads that failed on the old token run again.
fn track_token_version(connection: &DirectoryConnection, version: Option<&String>, ctx: &Context) {
    let key = ObjectRef::from_obj(connection);
    let previous = {
        let mut versions = ctx.token_versions.lock().unwrap_or_else(|p| p.into_inner());
        versions.insert(key, version.cloned())
    };
    let Some(previous) = previous else {
        return;
    };
    if previous.as_ref() == version {
        return;
    }

    let users = users_of_connection(&ctx.caches.usage, connection);
    tracing::info!(
        users = users.len(),
        "token Secret changed, queueing UserAvatars"
    );
    for user in users {
        let _ = ctx.dependents.unbounded_send(user);
    }
}

fn is_ready(status: &DirectoryConnectionStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}
