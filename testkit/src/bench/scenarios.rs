//! The five scenarios and the measurements around them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, ListParams, VersionMatch};
use kube::{Api, Client};

use super::metrics::{ApiRequests, OperatorCounters, WRITE_VERBS};
use super::objects::{self, avatar_name, avatar_resource, create_avatars, user_id};
use super::operator::{OperatorArgs, OperatorProcess, ProcessStats};
use super::report::{Check, Report, Table, mib, per, percentile, seconds};
use super::tracker::Tracker;
use super::{BenchConfig, BenchEnv, ChurnPlan, NoisePlan, ThrottlePlan};
use crate::directory::{DirectoryStandIn, StandInConfig};

/// Image set of the main namespace; the throttle scenario uses set 1.
const MAIN_SET: u64 = 0;
const THROTTLE_SET: u64 = 1;
/// Time without new reconciles or uploads after which the operator counts as idle.
const IDLE_QUIET: Duration = Duration::from_secs(2);
/// Maximum wait for the operator to become idle after its work is visible.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Page size of the floor lists, the same as the operator's watches use (kube-runtime's
/// default).
const LIST_PAGE: u32 = 500;
/// Repetitions of the floor lists; the median is reported.
const FLOOR_REPETITIONS: usize = 3;
/// Peak RSS target of the operator, in KiB.
const RSS_TARGET_KIB: u64 = 64 * 1024;

/// Runs every configured scenario and returns the tables and checks. An error ends the run
/// and is recorded in the report, after the results measured before it.
pub async fn run(env: &BenchEnv, config: &BenchConfig) -> Report {
    let mut report = Report {
        title: format!("N = {}", config.objects),
        ..Report::default()
    };
    match Bench::start(env, config, &mut report).await {
        Ok(mut bench) => {
            if let Err(error) = bench.run_scenarios(&mut report).await {
                report.error = Some(format!("{error:#}"));
            }
            bench.stop_operator().await;
        }
        Err(error) => report.error = Some(format!("{error:#}")),
    }
    report
}

/// State that the scenarios share.
struct Bench<'a> {
    env: &'a BenchEnv,
    config: &'a BenchConfig,
    http: reqwest::Client,
    stand_in: DirectoryStandIn,
    tracker: Tracker,
    operator: Option<OperatorProcess>,
    operator_runs: usize,
    /// Current content hash of each object in the main namespace, by index.
    hashes: Vec<String>,
    /// Highest peak RSS of a namespaced operator with the main objects, in KiB.
    peak_rss_kib: u64,
}

impl<'a> Bench<'a> {
    /// Starts the stand-in and creates the namespace, the connection and the objects.
    async fn start(
        env: &'a BenchEnv,
        config: &'a BenchConfig,
        report: &mut Report,
    ) -> Result<Bench<'a>> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("failed to build the HTTP client for /metrics")?;
        let mut stand_in_config = StandInConfig::new(objects::ORG_ID, objects::TOKEN);
        stand_in_config.latency = config.latency;
        let stand_in = DirectoryStandIn::start(stand_in_config).await?;

        let client = &env.client;
        let namespace = &config.namespace;
        objects::ensure_namespace(client, namespace).await?;
        objects::create_connection(client, namespace, &stand_in.base_url()).await?;
        tracing::info!(
            objects = config.objects,
            namespace,
            "creating UserAvatars and ConfigMaps"
        );
        let started = Instant::now();
        let hashes = create_avatars(
            client,
            namespace,
            MAIN_SET,
            config.objects,
            config.image_bytes,
            config.create_in_flight,
        )
        .await?;
        let creation = started.elapsed();
        let tracker = Tracker::start(client.clone(), namespace).await?;

        let mut table = Table::new("Setup", &["metric", "value"]);
        table.metric(
            "UserAvatars (one ConfigMap each)",
            config.objects.to_string(),
        );
        table.metric("image size", format!("{} KiB", config.image_bytes / 1024));
        let created = 2 * config.objects;
        table.metric(
            "time to create them",
            format!(
                "{} ({:.0} objects/s, {} requests in flight)",
                seconds(creation),
                created as f64 / creation.as_secs_f64(),
                config.create_in_flight
            ),
        );
        table.metric(
            "stand-in latency per upload",
            format!("{} ms", config.latency.as_millis()),
        );
        table.metric("operator --concurrency", config.concurrency.to_string());
        report.tables.push(table);

        Ok(Bench {
            env,
            config,
            http,
            stand_in,
            tracker,
            operator: None,
            operator_runs: 0,
            hashes,
            peak_rss_kib: 0,
        })
    }

    async fn run_scenarios(&mut self, report: &mut Report) -> Result<()> {
        self.cold_start(report).await?;
        self.warm_restart(report).await?;
        if let Some(plan) = self.config.churn {
            self.churn(plan, report).await?;
        }
        report.checks.push(Check {
            target: format!(
                "operator peak RSS with {} UserAvatars < 64 MiB",
                self.config.objects
            ),
            measured: mib(self.peak_rss_kib),
            ratio: Some(self.peak_rss_kib as f64 / RSS_TARGET_KIB as f64),
            passed: self.peak_rss_kib < RSS_TARGET_KIB,
            invariant: false,
        });
        if let Some(plan) = self.config.noise {
            self.noise(plan, report).await?;
        }
        if self.config.memory_breakdown {
            self.memory_breakdown(report).await?;
        }
        if let Some(plan) = self.config.throttle {
            self.throttle(plan, report).await?;
        }
        Ok(())
    }

    fn client(&self) -> &Client {
        &self.env.client
    }

    fn namespaced(&self) -> OperatorArgs {
        OperatorArgs {
            namespace: Some(self.config.namespace.clone()),
            concurrency: self.config.concurrency,
            upload_rate_limit: None,
            env: Vec::new(),
        }
    }

    fn expected(&self) -> Vec<(String, String)> {
        let pairs = self.hashes.iter().enumerate();
        pairs
            .map(|(index, hash)| (avatar_name(index), hash.clone()))
            .collect()
    }

    /// Maximum wait for `objects` objects to be handled: two minutes plus 60 ms per object.
    fn timeout_for(objects: usize) -> Duration {
        Duration::from_secs(120) + Duration::from_millis(60) * objects as u32
    }

    /// Reads `apiserver_request_total` from kube-apiserver.
    async fn api_requests(&self) -> Result<ApiRequests> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = self
            .client()
            .request_text(request)
            .await
            .context("failed to read kube-apiserver /metrics")?;
        Ok(ApiRequests::from_text(&text))
    }

    async fn start_operator(&mut self, args: OperatorArgs, label: &str) -> Result<()> {
        self.stop_operator().await;
        self.operator_runs += 1;
        let log = (self.env.log_dir).join(format!(
            "operator-{}-{}-{label}.log",
            self.config.objects, self.operator_runs
        ));
        let operator =
            OperatorProcess::spawn(&self.env.operator_binary, &self.env.kubeconfig, &args, &log)?;
        self.operator = Some(operator);
        Ok(())
    }

    async fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take()
            && let Err(error) = operator.stop().await
        {
            tracing::warn!(error = format!("{error:#}"), "failed to stop the operator");
        }
    }

    fn operator(&mut self) -> Result<&mut OperatorProcess> {
        self.operator
            .as_mut()
            .context("the operator is not running")
    }

    /// Waits until the running operator has counted `objects` reconciles (none for an empty
    /// namespace) and is idle.
    async fn wait_for_reconciles(&mut self, objects: usize) -> Result<OperatorRun> {
        let http = self.http.clone();
        let operator = self.operator()?;
        let timeout = Self::timeout_for(objects);
        let ready = operator.wait_until_ready(&http, timeout).await?;
        let condition = format!("{objects} reconciles");
        let enough = |c: &OperatorCounters| c.reconciles >= objects as u64;
        let (_, reached) = operator
            .wait_for_counters(&http, &condition, timeout, enough)
            .await?;
        let counters = operator
            .wait_until_idle(&http, IDLE_QUIET, IDLE_TIMEOUT)
            .await?;
        Ok(OperatorRun {
            ready: ready - operator.started,
            elapsed: reached - operator.started,
            counters,
            stats: operator.stats()?,
        })
    }

    async fn cold_start(&mut self, report: &mut Report) -> Result<()> {
        let objects = self.config.objects;
        tracing::info!(objects, "cold start");
        self.stand_in.clear();
        let before = self.api_requests().await?;
        self.start_operator(self.namespaced(), "cold").await?;

        let expected = self.expected();
        let ready_at = self
            .tracker
            .wait_all_ready(&expected, Self::timeout_for(objects))
            .await?;
        let http = self.http.clone();
        let operator = self.operator()?;
        let time_to_ready = ready_at.saturating_duration_since(operator.started);
        let counters = operator
            .wait_until_idle(&http, IDLE_QUIET, IDLE_TIMEOUT)
            .await?;
        let stats = operator.stats()?;
        let requests = self.api_requests().await?.since(&before);
        self.peak_rss_kib = self.peak_rss_kib.max(stats.peak_rss_kib);

        let uploads = UploadSummary::read(&self.stand_in, 0..objects);
        self.stand_in.clear();

        let mut table = Table::new("Cold start", &["metric", "value"]);
        table.metric("time to all Ready", seconds(time_to_ready));
        table.metric("uploads", per(uploads.total, objects));
        table.metric(
            "uploads per user (min / max)",
            format!("{} / {}", uploads.min, uploads.max),
        );
        table.metric(
            "upload rate, first to last upload",
            format!("{:.1} /s", uploads.rate()),
        );
        table.metric("reconciles", per(counters.reconciles, objects));
        table.metric(
            "ConfigMap bytes read",
            format!("{:.1} MiB", counters.config_map_bytes as f64 / 1048576.0),
        );
        push_stats(&mut table, &stats);
        push_writes(&mut table, &requests, objects);
        report.tables.push(table);
        report.tables.push(requests_table(
            "Cold start: kube-apiserver requests",
            &requests,
            objects,
        ));

        report.checks.push(Check {
            target: "cold start: exactly 1 upload per object".into(),
            measured: format!(
                "{} uploads for {objects} objects, {} users not uploaded exactly once",
                uploads.total, uploads.not_once
            ),
            ratio: Some(uploads.total as f64 / objects as f64),
            passed: uploads.total == objects as u64 && uploads.not_once == 0,
            invariant: true,
        });
        Ok(())
    }

    async fn warm_restart(&mut self, report: &mut Report) -> Result<()> {
        let objects = self.config.objects;
        tracing::info!(objects, "warm restart");
        self.stop_operator().await;
        self.stand_in.clear();
        let before = self.api_requests().await?;
        self.start_operator(self.namespaced(), "warm").await?;
        let run = self.wait_for_reconciles(objects).await?;
        let (elapsed, counters, stats) = (run.elapsed, run.counters, run.stats);
        let requests = self.api_requests().await?.since(&before);
        let uploads = UploadSummary::read(&self.stand_in, 0..objects).total;
        self.peak_rss_kib = self.peak_rss_kib.max(stats.peak_rss_kib);

        let floor = self.measure_floor().await?;
        let sizes = self.cache_sizes().await?;
        let quiet = self.quiet_window().await?;

        let status_writes = requests.count(WRITE_VERBS, "useravatars", "status");
        let config_map_reads = requests.count(&["GET"], "configmaps", "");
        let ratio = elapsed.as_secs_f64() / floor.as_secs_f64();

        let mut table = Table::new("Warm restart", &["metric", "value"]);
        table.metric(
            "time until /readyz (watch caches synced)",
            seconds(run.ready),
        );
        table.metric("time until reconciles_total >= N", seconds(elapsed));
        table.metric(
            "floor: list UserAvatars + metadata list ConfigMaps (median of 3)",
            seconds(floor),
        );
        table.metric("warm restart / floor", format!("{ratio:.2}"));
        table.metric("reconciles after idle", per(counters.reconciles, objects));
        table.metric("uploads", uploads.to_string());
        table.metric(
            "status writes (useravatars/status)",
            status_writes.to_string(),
        );
        table.metric("ConfigMap GETs", per(config_map_reads, objects));
        push_stats(&mut table, &stats);
        report.tables.push(table);
        report.tables.push(requests_table(
            "Warm restart: kube-apiserver requests",
            &requests,
            objects,
        ));
        report.tables.push(sizes.table(objects));
        report.tables.push(quiet.table(self.config.quiet));

        let checks = [
            Check {
                target: "warm restart: 0 uploads".into(),
                measured: uploads.to_string(),
                ratio: None,
                passed: uploads == 0,
                invariant: true,
            },
            Check {
                target: "warm restart: 0 status writes".into(),
                measured: status_writes.to_string(),
                ratio: None,
                passed: status_writes == 0,
                invariant: true,
            },
            Check {
                target: "warm restart: at most 1 ConfigMap read per object".into(),
                measured: format!("{config_map_reads} GETs for {objects} objects"),
                ratio: Some(config_map_reads as f64 / objects as f64),
                passed: config_map_reads <= objects as u64,
                invariant: true,
            },
            Check {
                target: format!(
                    "steady state ({} s idle): 0 ConfigMap reads, status writes and uploads",
                    self.config.quiet.as_secs()
                ),
                measured: format!(
                    "{} GETs, {} status writes, {} uploads",
                    quiet.config_map_reads, quiet.status_writes, quiet.uploads
                ),
                ratio: None,
                passed: quiet.config_map_reads == 0
                    && quiet.status_writes == 0
                    && quiet.uploads == 0,
                invariant: true,
            },
            Check {
                target: format!("warm restart of {objects} <= 2x the bare-list floor"),
                measured: format!("{} vs {}", seconds(elapsed), seconds(floor)),
                ratio: Some(ratio / 2.0),
                passed: ratio <= 2.0,
                invariant: false,
            },
        ];
        report.checks.extend(checks);
        Ok(())
    }

    /// Times the minimum a client must read to learn the state a restarted operator needs:
    /// a full list of the UserAvatars (from the watch cache with `resourceVersion=0`, as the
    /// operator's watch requests) and, at the same time, a metadata-only list of the
    /// ConfigMaps (a consistent read, as the operator's watch requests), in pages of 500.
    async fn measure_floor(&self) -> Result<Duration> {
        let avatars: Api<DynamicObject> = Api::namespaced_with(
            self.client().clone(),
            &self.config.namespace,
            &avatar_resource(),
        );
        let config_maps: Api<ConfigMap> =
            Api::namespaced(self.client().clone(), &self.config.namespace);
        let mut samples = Vec::new();
        for _ in 0..FLOOR_REPETITIONS {
            let started = Instant::now();
            let list_avatars = async {
                let mut params = ListParams::default().limit(LIST_PAGE);
                params.resource_version = Some("0".into());
                params.version_match = Some(VersionMatch::NotOlderThan);
                let mut count = 0;
                loop {
                    let page = avatars.list(&params).await?;
                    count += page.items.len();
                    match page.metadata.continue_.filter(|token| !token.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => break,
                    }
                }
                anyhow::Ok(count)
            };
            let list_config_maps = async {
                let mut params = ListParams::default().limit(LIST_PAGE);
                let mut count = 0;
                loop {
                    let page = config_maps.list_metadata(&params).await?;
                    count += page.items.len();
                    match page.metadata.continue_.filter(|token| !token.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => break,
                    }
                }
                anyhow::Ok(count)
            };
            let (avatar_count, _) = tokio::try_join!(list_avatars, list_config_maps)?;
            anyhow::ensure!(
                avatar_count == self.config.objects,
                "the floor list returned {avatar_count} UserAvatars, expected {}",
                self.config.objects
            );
            samples.push(started.elapsed());
        }
        samples.sort();
        Ok(samples[samples.len() / 2])
    }

    /// Measures the JSON size of what the operator caches: full UserAvatars, and ConfigMap
    /// metadata without managedFields (which the operator drops).
    async fn cache_sizes(&self) -> Result<CacheSizes> {
        let mut sizes = CacheSizes::default();
        let path = format!(
            "/apis/y360-avatar-operator.dev/v1alpha1/namespaces/{}/useravatars",
            self.config.namespace
        );
        let mut token = String::new();
        loop {
            let url = format!("{path}?limit={LIST_PAGE}&continue={token}");
            let page: serde_json::Value = self
                .client()
                .request(http::Request::get(url).body(Vec::new())?)
                .await?;
            for mut item in page["items"].as_array().cloned().unwrap_or_default() {
                let full = serde_json::to_vec(&item)?.len() as u64;
                if let Some(metadata) = item.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    metadata.remove("managedFields");
                }
                let without = serde_json::to_vec(&item)?.len() as u64;
                sizes.avatar_bytes += full;
                sizes.avatar_managed_fields_bytes += full - without;
            }
            match page["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                Some(next) => token = next.to_owned(),
                None => break,
            }
        }
        let config_maps: Api<ConfigMap> =
            Api::namespaced(self.client().clone(), &self.config.namespace);
        let list = config_maps.list_metadata(&ListParams::default()).await?;
        for mut item in list.items {
            item.metadata.managed_fields = None;
            sizes.config_map_metadata_bytes += serde_json::to_vec(&item)?.len() as u64;
        }
        Ok(sizes)
    }

    /// Watches the idle operator for `config.quiet` and counts what it sends.
    async fn quiet_window(&mut self) -> Result<QuietWindow> {
        self.stand_in.clear();
        let before = self.api_requests().await?;
        tokio::time::sleep(self.config.quiet).await;
        let requests = self.api_requests().await?.since(&before);
        let uploads = self.stand_in.upload_counts().values().sum::<usize>() as u64;
        self.operator()?.check_running()?;
        Ok(QuietWindow {
            config_map_reads: requests.count(&["GET"], "configmaps", ""),
            status_writes: requests.count(WRITE_VERBS, "useravatars", "status"),
            uploads,
            requests,
        })
    }

    async fn churn(&mut self, plan: ChurnPlan, report: &mut Report) -> Result<()> {
        let objects = self.config.objects;
        let changes = plan.changes.min(objects);
        tracing::info!(changes, duration = ?plan.duration, "churn");
        if self.operator.is_none() {
            self.start_operator(self.namespaced(), "churn").await?;
            self.wait_for_reconciles(objects).await?;
        }
        self.stand_in.clear();
        let before = self.api_requests().await?;
        let stats_before = self.operator()?.stats()?;

        let interval = plan.duration / changes as u32;
        let started = tokio::time::Instant::now();
        let mut edits = Vec::with_capacity(changes);
        for step in 0..changes {
            tokio::time::sleep_until(started + interval * step as u32).await;
            let index = step * objects / changes;
            let edited_at = Instant::now();
            let hash = objects::replace_image(
                self.client(),
                &self.config.namespace,
                MAIN_SET,
                index,
                1,
                self.config.image_bytes,
            )
            .await?;
            self.hashes[index] = hash.clone();
            edits.push((index, hash, edited_at));
        }
        let expected: Vec<(String, String)> = edits
            .iter()
            .map(|(index, hash, _)| (avatar_name(*index), hash.clone()))
            .collect();
        self.tracker
            .wait_all_ready(&expected, Self::timeout_for(changes))
            .await?;
        let http = self.http.clone();
        let operator = self.operator()?;
        operator
            .wait_until_idle(&http, IDLE_QUIET, IDLE_TIMEOUT)
            .await?;
        let stats = operator.stats()?;
        let mut requests = self.api_requests().await?.since(&before);
        // The benchmark's own image edits.
        requests.subtract("PATCH", "configmaps", changes as u64);

        let mut delays: Vec<Duration> = edits
            .iter()
            .filter_map(|(index, hash, edited_at)| {
                let ready = self.tracker.ready_since(&avatar_name(*index), hash)?;
                Some(ready.saturating_duration_since(*edited_at))
            })
            .collect();
        delays.sort();
        let counts = self.stand_in.upload_counts();
        let total: usize = counts.values().sum();
        let changed: Vec<String> = edits.iter().map(|(index, _, _)| user_id(*index)).collect();
        let changed_once = changed
            .iter()
            .filter(|user| counts.get(*user) == Some(&1))
            .count();
        let per_change = total as f64 / changes as f64;
        self.stand_in.clear();

        let mut table = Table::new("Churn", &["metric", "value"]);
        table.metric(
            "image changes",
            format!(
                "{changes} over {} (one every {})",
                seconds(plan.duration),
                seconds(interval)
            ),
        );
        table.metric("uploads", total.to_string());
        table.metric("uploads per change", format!("{per_change:.2}"));
        table.metric(
            "changed objects uploaded exactly once",
            format!("{changed_once} of {changes}"),
        );
        table.metric(
            "edit to Ready with new hash: p50 / p95 / max",
            format!(
                "{} / {} / {}",
                seconds(percentile(&delays, 50)),
                seconds(percentile(&delays, 95)),
                seconds(percentile(&delays, 100))
            ),
        );
        let config_map_reads = requests.count(&["GET"], "configmaps", "");
        table.metric(
            "ConfigMap GETs per change",
            format!("{:.2}", config_map_reads as f64 / changes as f64),
        );
        let status_writes = requests.count(WRITE_VERBS, "useravatars", "status");
        table.metric(
            "status writes per change",
            format!("{:.2}", status_writes as f64 / changes as f64),
        );
        table.metric(
            "operator CPU during churn",
            format!("{:.2} s", stats.cpu_seconds - stats_before.cpu_seconds),
        );
        table.metric("operator RSS at end (VmRSS)", mib(stats.rss_kib));
        report.tables.push(table);
        report.tables.push(requests_table(
            "Churn: kube-apiserver requests (without the benchmark's edits)",
            &requests,
            changes,
        ));

        report.checks.push(Check {
            target: "churn: uploads per content change exactly 1.00".into(),
            measured: format!(
                "{total} uploads for {changes} changes; {changed_once} changed objects uploaded once"
            ),
            ratio: Some(per_change),
            passed: total == changes && changed_once == changes,
            invariant: true,
        });
        Ok(())
    }

    /// Runs the operator until it has reconciled the main objects and is idle, then stops it.
    async fn run_to_idle(&mut self, args: OperatorArgs, label: &str) -> Result<OperatorRun> {
        self.start_operator(args, label).await?;
        let run = self.wait_for_reconciles(self.config.objects).await?;
        self.stop_operator().await;
        Ok(run)
    }

    async fn noise(&mut self, plan: NoisePlan, report: &mut Report) -> Result<()> {
        tracing::info!(bytes = plan.total_bytes, "noise");
        self.stop_operator().await;
        let cluster_wide = OperatorArgs {
            namespace: None,
            ..self.namespaced()
        };
        let quiet = self
            .run_to_idle(cluster_wide.clone(), "all-namespaces")
            .await?;

        let started = Instant::now();
        let noise = objects::create_noise(
            self.client(),
            plan.total_bytes,
            plan.object_bytes,
            self.config.create_in_flight,
        )
        .await?;
        let creation = started.elapsed();

        let noisy = self
            .run_to_idle(cluster_wide, "all-namespaces-noise")
            .await?;
        let namespaced = self
            .run_to_idle(self.namespaced(), "namespaced-noise")
            .await?;

        let mut table = Table::new(
            "Noise",
            &[
                "operator watches",
                "noise",
                "time to N reconciles",
                "peak RSS",
                "RSS at end",
                "CPU",
            ],
        );
        let no_noise = "none".to_owned();
        let with_noise = format!(
            "{} ConfigMaps + {} Secrets, {:.2} GiB",
            noise.config_maps,
            noise.secrets,
            noise.bytes as f64 / (1u64 << 30) as f64
        );
        for (scope, noise, run) in [
            ("all namespaces", &no_noise, &quiet),
            ("all namespaces", &with_noise, &noisy),
            ("namespace only", &with_noise, &namespaced),
        ] {
            table.row(&[
                scope.to_owned(),
                noise.clone(),
                seconds(run.elapsed),
                mib(run.stats.peak_rss_kib),
                mib(run.stats.rss_kib),
                format!("{:.2} s", run.stats.cpu_seconds),
            ]);
        }
        table.row(&[
            "(creating the noise)".into(),
            with_noise.clone(),
            seconds(creation),
        ]);
        report.tables.push(table);

        let baseline = quiet.stats.peak_rss_kib as f64;
        let change = (noisy.stats.peak_rss_kib as f64 - baseline) / baseline;
        report.checks.push(Check {
            target: "noise changes the peak RSS of an all-namespaces operator by < 10%".into(),
            measured: format!(
                "{} without, {} with {with_noise}",
                mib(quiet.stats.peak_rss_kib),
                mib(noisy.stats.peak_rss_kib)
            ),
            ratio: Some(change.abs() / 0.10),
            passed: change.abs() < 0.10,
            invariant: false,
        });
        Ok(())
    }

    /// Restarts the operator in variations that each remove one suspected part of its memory,
    /// so that the differences in RSS show what the memory is spent on.
    async fn memory_breakdown(&mut self, report: &mut Report) -> Result<()> {
        tracing::info!("memory breakdown");
        self.stop_operator().await;
        let objects = self.config.objects;
        let default = self
            .run_to_idle(self.namespaced(), "memory-default")
            .await?;

        let empty_namespace = format!("{}-empty", self.config.namespace);
        objects::ensure_namespace(self.client(), &empty_namespace).await?;
        let empty_args = OperatorArgs {
            namespace: Some(empty_namespace),
            ..self.namespaced()
        };
        self.start_operator(empty_args, "memory-empty").await?;
        let empty = self.wait_for_reconciles(0).await?;
        self.stop_operator().await;

        let one_arena = OperatorArgs {
            env: vec![(
                "GLIBC_TUNABLES".to_owned(),
                "glibc.malloc.arena_max=1".to_owned(),
            )],
            ..self.namespaced()
        };
        let one_arena = self.run_to_idle(one_arena, "memory-one-arena").await?;

        let started = Instant::now();
        objects::strip_managed_fields(
            self.client(),
            &self.config.namespace,
            objects,
            self.config.create_in_flight,
        )
        .await?;
        let stripping = started.elapsed();
        let stripped = self
            .run_to_idle(self.namespaced(), "memory-no-managed-fields")
            .await?;

        let mut table = Table::new(
            "Memory breakdown: operator restarted until idle, one change at a time",
            &["variation", "peak RSS", "RSS at end", "change from default"],
        );
        let baseline = default.stats.peak_rss_kib as f64;
        let variations = [
            (format!("default, {objects} UserAvatars"), &default),
            ("empty namespace (no objects)".to_owned(), &empty),
            (
                "GLIBC_TUNABLES=glibc.malloc.arena_max=1".to_owned(),
                &one_arena,
            ),
            (
                format!(
                    "UserAvatars without managedFields (stripped in {})",
                    seconds(stripping)
                ),
                &stripped,
            ),
        ];
        for (name, run) in variations {
            let change = run.stats.peak_rss_kib as f64 - baseline;
            table.row(&[
                name,
                mib(run.stats.peak_rss_kib),
                mib(run.stats.rss_kib),
                format!("{:+.1} MiB", change / 1024.0),
            ]);
        }
        let per_object = (baseline - empty.stats.peak_rss_kib as f64) * 1024.0 / objects as f64;
        table.row(&[
            "per UserAvatar: (default - empty) / N".to_owned(),
            format!("{:.1} KiB", per_object / 1024.0),
        ]);
        report.tables.push(table);
        Ok(())
    }

    async fn throttle(&mut self, plan: ThrottlePlan, report: &mut Report) -> Result<()> {
        tracing::info!(objects = plan.objects, rate = plan.rate, "throttle");
        self.stop_operator().await;
        let namespace = format!("{}-throttle", self.config.namespace);
        let client = self.client().clone();
        objects::ensure_namespace(&client, &namespace).await?;
        objects::create_connection(&client, &namespace, &self.stand_in.base_url()).await?;
        let hashes = create_avatars(
            &client,
            &namespace,
            THROTTLE_SET,
            plan.objects,
            self.config.image_bytes,
            self.config.create_in_flight,
        )
        .await?;
        let tracker = Tracker::start(client, &namespace).await?;
        let expected: Vec<(String, String)> = (hashes.iter().enumerate())
            .map(|(index, hash)| (avatar_name(index), hash.clone()))
            .collect();

        self.stand_in.clear();
        let args = OperatorArgs {
            namespace: Some(namespace),
            concurrency: self.config.concurrency,
            upload_rate_limit: Some(plan.rate),
            env: Vec::new(),
        };
        self.start_operator(args, "throttle").await?;
        let timeout =
            Duration::from_secs_f64(plan.objects as f64 / plan.rate) * 2 + Duration::from_secs(120);
        let ready_at = tracker.wait_all_ready(&expected, timeout).await?;
        let http = self.http.clone();
        let operator = self.operator()?;
        let time_to_ready = ready_at.saturating_duration_since(operator.started);
        operator
            .wait_until_idle(&http, IDLE_QUIET, IDLE_TIMEOUT)
            .await?;
        let uploads = UploadSummary::read(&self.stand_in, 0..plan.objects);
        self.stop_operator().await;
        self.stand_in.clear();

        let latency = self.config.latency.as_secs_f64();
        let latency_bound = if latency > 0.0 {
            f64::from(self.config.concurrency) / latency
        } else {
            f64::INFINITY
        };
        let expected_rate = plan.rate.min(latency_bound);
        let achieved = uploads.rate();
        // The bucket starts full with one token, so one upload more than the rate may fall in
        // the first second.
        let window_limit = plan.rate.floor() as usize + 1;
        let busiest = busiest_second(&uploads.times);

        let mut table = Table::new("Throttle", &["metric", "value"]);
        table.metric("fresh UserAvatars", plan.objects.to_string());
        table.metric("--upload-rate-limit", format!("{} /s", plan.rate));
        table.metric(
            "expected rate min(R, concurrency / latency)",
            format!("{expected_rate:.1} /s"),
        );
        table.metric(
            "achieved rate, first to last upload",
            format!("{achieved:.2} /s"),
        );
        table.metric("most uploads in any 1 s window", busiest.to_string());
        table.metric("uploads", per(uploads.total, plan.objects));
        table.metric("time to all Ready", seconds(time_to_ready));
        report.tables.push(table);

        let deviation = (achieved - expected_rate).abs() / expected_rate;
        report.checks.extend([
            Check {
                target: "throttle: exactly 1 upload per object".into(),
                measured: format!("{} uploads for {} objects", uploads.total, plan.objects),
                ratio: Some(uploads.total as f64 / plan.objects as f64),
                passed: uploads.total == plan.objects as u64 && uploads.not_once == 0,
                invariant: true,
            },
            Check {
                target: "throttle: achieved rate within 10% of min(R, concurrency / latency)"
                    .into(),
                measured: format!("{achieved:.2} /s vs {expected_rate:.1} /s"),
                ratio: Some(achieved / expected_rate),
                passed: deviation <= 0.10,
                invariant: false,
            },
            Check {
                target: format!("throttle: at most R + burst = {window_limit} uploads in any 1 s"),
                measured: busiest.to_string(),
                ratio: Some(busiest as f64 / plan.rate),
                passed: busiest <= window_limit,
                invariant: false,
            },
        ]);
        Ok(())
    }
}

/// Uploads that the stand-in recorded for a range of objects.
struct UploadSummary {
    total: u64,
    min: usize,
    max: usize,
    /// Objects not uploaded exactly once.
    not_once: usize,
    /// Arrival times of all uploads, oldest first.
    times: Vec<SystemTime>,
}

impl UploadSummary {
    fn read(stand_in: &DirectoryStandIn, indices: std::ops::Range<usize>) -> Self {
        let counts: BTreeMap<String, usize> = stand_in.upload_counts();
        let per_object: Vec<usize> = indices
            .map(|index| counts.get(&user_id(index)).copied().unwrap_or(0))
            .collect();
        let mut times = stand_in.upload_times();
        times.sort();
        Self {
            total: counts.values().sum::<usize>() as u64,
            min: per_object.iter().copied().min().unwrap_or(0),
            max: per_object.iter().copied().max().unwrap_or(0),
            not_once: per_object.iter().filter(|count| **count != 1).count(),
            times,
        }
    }

    /// Returns uploads per second between the first and the last upload.
    fn rate(&self) -> f64 {
        let (Some(first), Some(last)) = (self.times.first(), self.times.last()) else {
            return 0.0;
        };
        let span = last.duration_since(*first).unwrap_or_default();
        if span.is_zero() {
            return 0.0;
        }
        (self.times.len() - 1) as f64 / span.as_secs_f64()
    }
}

/// Returns the largest number of sorted times inside any half-open window of one second.
fn busiest_second(times: &[SystemTime]) -> usize {
    let mut busiest = 0;
    let mut start = 0;
    for (end, time) in times.iter().enumerate() {
        while time.duration_since(times[start]).unwrap_or_default() >= Duration::from_secs(1) {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    busiest
}

/// A namespaced or all-namespaces operator run until it reconciled every object.
struct OperatorRun {
    /// From spawn to `/readyz` returning 200 (watch caches synced).
    ready: Duration,
    /// From spawn to the `N`-th reconcile.
    elapsed: Duration,
    /// Counters once the operator was idle.
    counters: OperatorCounters,
    stats: ProcessStats,
}

/// JSON sizes of the objects the operator caches.
#[derive(Default)]
struct CacheSizes {
    avatar_bytes: u64,
    avatar_managed_fields_bytes: u64,
    config_map_metadata_bytes: u64,
}

impl CacheSizes {
    fn table(&self, objects: usize) -> Table {
        let mut table = Table::new(
            "Warm restart: JSON size of the objects the operator caches",
            &["objects", "total", "per object"],
        );
        let mut row = |name: &str, bytes: u64| {
            table.row(&[
                name.to_owned(),
                format!("{:.1} MiB", bytes as f64 / 1048576.0),
                format!("{} B", bytes / objects.max(1) as u64),
            ]);
        };
        row("UserAvatars, full", self.avatar_bytes);
        row(
            "  of which metadata.managedFields",
            self.avatar_managed_fields_bytes,
        );
        row(
            "ConfigMap metadata without managedFields",
            self.config_map_metadata_bytes,
        );
        table
    }
}

/// Requests and uploads of an idle operator during the quiet window.
struct QuietWindow {
    config_map_reads: u64,
    status_writes: u64,
    uploads: u64,
    requests: ApiRequests,
}

impl QuietWindow {
    fn table(&self, duration: Duration) -> Table {
        let title = format!(
            "Steady state: kube-apiserver requests during {} s of an idle operator",
            duration.as_secs()
        );
        let mut table = requests_table(&title, &self.requests, 1);
        table.columns.truncate(3);
        for row in &mut table.rows {
            row.truncate(3);
        }
        table.row(&[
            "uploads".into(),
            "Directory API".into(),
            self.uploads.to_string(),
        ]);
        table
    }
}

/// Lists kube-apiserver requests by verb and resource, with a count per object. WATCH counts
/// include the benchmark's own watch, which counts one each time it reconnects.
fn requests_table(title: &str, requests: &ApiRequests, objects: usize) -> Table {
    let mut table = Table::new(title, &["verb", "resource", "requests", "per object"]);
    for (key, count) in &requests.counts {
        table.row(&[
            key.verb.clone(),
            key.resource_name(),
            count.to_string(),
            format!("{:.2}", *count as f64 / objects.max(1) as f64),
        ]);
    }
    if requests.counts.is_empty() {
        table.row(&["(none)".into()]);
    }
    table
}

fn push_stats(table: &mut Table, stats: &ProcessStats) {
    table.metric("operator peak RSS (VmHWM)", mib(stats.peak_rss_kib));
    table.metric("operator RSS at end (VmRSS)", mib(stats.rss_kib));
    table.metric(
        "operator CPU (user + system)",
        format!("{:.2} s", stats.cpu_seconds),
    );
}

fn push_writes(table: &mut Table, requests: &ApiRequests, objects: usize) {
    let status_writes = requests.count(WRITE_VERBS, "useravatars", "status");
    table.metric(
        "status writes (useravatars/status)",
        per(status_writes, objects),
    );
    let reads = requests.count(&["GET"], "configmaps", "");
    table.metric("ConfigMap GETs", per(reads, objects));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_second_counts_half_open_windows() {
        let start = SystemTime::UNIX_EPOCH;
        let times: Vec<SystemTime> = [0, 500, 999, 1000, 1999, 2000]
            .iter()
            .map(|ms| start + Duration::from_millis(*ms))
            .collect();
        assert_eq!(busiest_second(&times), 3);
        assert_eq!(busiest_second(&[]), 0);
    }
}
