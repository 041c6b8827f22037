//! One attempt to bring a UserAvatar up to date: resolve the connection, read the source,
//! validate the image, and upload it when its hash or target changed or a re-upload was
//! requested.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::crd::{DirectoryConnection, UploadTarget, UserAvatar, UserAvatarStatus};
use crate::credentials::read_token;
use crate::directory::Endpoint;
use crate::image::{Image, InvalidImage};
use crate::reason::{Failure, Reason};
use crate::source::{Fetched, SourceError, read_config_map_key};
use crate::status::{Outcome, Upload};
use crate::watches::reupload_request;

/// Source bytes, or the finding that the source did not change since the last upload.
enum SourceRead {
    Unchanged {
        version: Option<String>,
    },
    Bytes {
        bytes: Vec<u8>,
        version: Option<String>,
    },
}

/// The object under reconcile and what the attempt needs around it.
pub struct Attempt<'a> {
    pub avatar: &'a UserAvatar,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub ctx: &'a Context,
}

impl Attempt<'_> {
    /// Decides what the object needs and does it. A failure is returned as `Err`.
    pub async fn evaluate(&self) -> Result<Outcome, Failure> {
        if self.avatar.spec.suspend {
            return Ok(Outcome::Suspended);
        }
        let connection = self.find_connection()?;
        let target = UploadTarget {
            connection: connection.name_any(),
            org_id: connection.spec.org_id,
            user_id: self.avatar.spec.user_id.clone(),
        };

        let (bytes, version) = match self.read_source(&target).await? {
            SourceRead::Unchanged { version } => {
                return Ok(Outcome::UpToDate {
                    target,
                    source_version: version,
                });
            }
            SourceRead::Bytes { bytes, version } => (bytes, version),
        };
        let max_bytes = self.ctx.settings.max_image_bytes;
        let image = Image::validate(bytes, max_bytes).map_err(invalid_image)?;
        if let Some(outcome) = self.already_uploaded(&image.hash, &target, &version) {
            return Ok(outcome);
        }
        self.upload(&connection, target, image, version).await
    }

    /// Returns the re-upload request that no upload has handled yet.
    fn pending_reupload(&self) -> Option<&str> {
        let requested = reupload_request(self.avatar)?;
        let status = self.avatar.status.as_ref();
        let handled = status.and_then(|status| status.last_handled_reupload.as_deref());
        (handled != Some(requested)).then_some(requested)
    }

    fn find_connection(&self) -> Result<Arc<DirectoryConnection>, Failure> {
        let name = &self.avatar.spec.connection_ref.name;
        let key = ObjectRef::new(name).within(self.namespace);
        self.ctx.caches.connections.get(&key).ok_or_else(|| {
            let namespace = self.namespace;
            let message =
                format!("DirectoryConnection {name:?} not found in namespace {namespace:?}");
            Failure::new(Reason::ConnectionNotFound, message)
        })
    }

    /// Returns the source version that still describes the uploaded image: set only when the
    /// last upload went to the same target without error and no re-upload is pending.
    fn settled_version(&self, target: &UploadTarget) -> Option<String> {
        let status = self.avatar.status.as_ref()?;
        let settled = is_settled(status, target) && self.pending_reupload().is_none();
        settled.then(|| status.source_version.clone()).flatten()
    }

    async fn read_source(&self, target: &UploadTarget) -> Result<SourceRead, Failure> {
        let settled_version = self.settled_version(target);
        if let Some(url) = &self.avatar.spec.source.url {
            return self.fetch_url(url, settled_version).await;
        }
        let Some(source) = &self.avatar.spec.source.config_map else {
            let message = "source must set exactly one of configMap and url";
            return Err(Failure::new(Reason::InvalidSpec, message));
        };

        let key = ObjectRef::new(&source.name).within(self.namespace);
        let Some(meta) = self.ctx.caches.config_maps.get(&key) else {
            let missing = SourceError::ConfigMapNotFound {
                name: source.name.clone(),
            };
            return Err(missing.to_failure());
        };
        let cached_version = meta.metadata.resource_version.clone();
        if cached_version.is_some() && cached_version == settled_version {
            return Ok(SourceRead::Unchanged {
                version: settled_version,
            });
        }

        let api = Api::namespaced(self.ctx.client.clone(), self.namespace);
        let read = read_config_map_key(&api, &source.name, &source.key).await;
        let read = read.map_err(|error| error.to_failure())?;
        self.ctx
            .metrics
            .observe_bytes("config_map", read.bytes.len());
        Ok(SourceRead::Bytes {
            bytes: read.bytes,
            version: read.resource_version,
        })
    }

    async fn fetch_url(&self, url: &str, validator: Option<String>) -> Result<SourceRead, Failure> {
        let fetched = self.ctx.fetcher.fetch(url, validator.as_deref()).await;
        match fetched.map_err(|error| error.to_failure())? {
            Fetched::NotModified => Ok(SourceRead::Unchanged { version: validator }),
            Fetched::Body { bytes, validator } => {
                self.ctx.metrics.observe_bytes("url", bytes.len());
                Ok(SourceRead::Bytes {
                    bytes,
                    version: validator,
                })
            }
        }
    }

    /// Returns the outcome when `hash` already went to `target`, as recorded in status or, when
    /// the object is older than the last status write, in this process's memory.
    fn already_uploaded(
        &self,
        hash: &str,
        target: &UploadTarget,
        version: &Option<String>,
    ) -> Option<Outcome> {
        let reupload = self.pending_reupload();
        let status = self.avatar.status.as_ref();
        let recorded = status.is_some_and(|status| {
            status.content_hash.as_deref() == Some(hash)
                && status.uploaded_to.as_ref() == Some(target)
        });
        if recorded && reupload.is_none() {
            let target = target.clone();
            return Some(Outcome::UpToDate {
                target,
                source_version: version.clone(),
            });
        }

        let mut earlier = self.ctx.memory.uploaded(self.uid, hash, target)?;
        if reupload.is_some() && earlier.reupload_request.as_deref() != reupload {
            return None;
        }
        earlier.source_version = version.clone();
        Some(Outcome::UploadedEarlier(earlier))
    }

    async fn upload(
        &self,
        connection: &DirectoryConnection,
        target: UploadTarget,
        image: Image,
        source_version: Option<String>,
    ) -> Result<Outcome, Failure> {
        let token_ref = &connection.spec.token_secret_ref;
        let credentials = read_token(&self.ctx.client, self.namespace, token_ref).await?;
        let fingerprint = self.fingerprint(connection, &image, &credentials.secret_version);
        let memory = &self.ctx.memory;
        if let Some(failure) = memory.blocked_failure(self.uid, &fingerprint, Instant::now()) {
            tracing::debug!(reason = %failure.reason, "upload skipped: the same request failed before");
            return Err(failure);
        }
        if let Some(limiter) = &self.ctx.settings.upload_limiter {
            limiter.acquire().await;
        }
        memory.begin_attempt(self.uid, fingerprint);

        let endpoint = Endpoint {
            api_url: connection.spec.api_url.clone(),
            layout: connection.spec.path_layout,
            org_id: connection.spec.org_id,
        };
        let directory = &self.ctx.directory;
        let result =
            directory.upload_avatar(&endpoint, &target.user_id, &credentials.token, &image);
        let result = result.await;
        let metrics = &self.ctx.metrics;
        metrics
            .observe_directory_request(result.as_ref().map_or_else(|e| e.status(), |_| Some(200)));
        let uploaded = result.map_err(|error| {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "Directory API request failed"
            );
            let failure = error.to_failure();
            metrics.observe_upload(failure.reason.as_str());
            failure
        })?;
        metrics.observe_upload(Reason::Uploaded.as_str());

        let upload = Upload {
            url: uploaded.url,
            content_type: image.content_type().to_owned(),
            content_hash: image.hash,
            target,
            source_version,
            reupload_request: self.pending_reupload().map(str::to_owned),
            time: Time(k8s_openapi::jiff::Timestamp::now()),
        };
        memory.record_upload(self.uid, &upload);
        Ok(Outcome::Uploaded(upload))
    }

    /// Identifies the inputs of an upload. A failed upload is sent again early only when one
    /// of them changes: the image, the UserAvatar spec, the re-upload request, the connection
    /// spec or the token Secret.
    fn fingerprint(&self, connection: &DirectoryConnection, image: &Image, secret: &str) -> String {
        format!(
            "{}|{:?}|{:?}|{}|{:?}|{}",
            image.hash,
            self.avatar.metadata.generation,
            self.pending_reupload(),
            connection.uid().unwrap_or_default(),
            connection.metadata.generation,
            secret,
        )
    }
}

/// Returns whether the last recorded upload went to `target` and left no error, so that an
/// unchanged source version means an unchanged image.
fn is_settled(status: &UserAvatarStatus, target: &UploadTarget) -> bool {
    status.content_hash.is_some()
        && status.uploaded_to.as_ref() == Some(target)
        && status.last_error.is_empty()
}

fn invalid_image(error: InvalidImage) -> Failure {
    let reason = match error {
        InvalidImage::Empty => Reason::EmptyImage,
        InvalidImage::UnsupportedFormat { .. } => Reason::UnsupportedImageFormat,
        InvalidImage::Truncated { .. } => Reason::TruncatedImage,
        InvalidImage::TooLarge { .. } => Reason::SourceTooLarge,
    };
    Failure::new(reason, error.to_string())
}
