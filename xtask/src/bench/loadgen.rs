//! A closed-loop HTTP/1.1 load generator on hyper: N keep-alive connections, each sending the
//! next request as soon as the previous answer arrived, for a fixed time. Loopback only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How hard and how long to push.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Measured time per run (after a short warm-up).
    pub duration: Duration,
    /// Concurrent connections.
    pub connections: usize,
}

/// The request every connection sends, again and again.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:<port>/path` (loopback only).
    pub url: String,
    /// HTTP method.
    pub method: hyper::Method,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for GET).
    pub body: Bytes,
}

impl Target {
    /// `GET url`.
    pub fn get(url: String) -> Self {
        Self {
            url,
            method: hyper::Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `POST url` with a JSON body and extra headers.
    pub fn post_json(url: String, body: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![("content-type".to_owned(), "application/json".to_owned())];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Self {
            url,
            method: hyper::Method::POST,
            headers: all,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

/// The parts of one request that differ from its [`Target`]: extra headers and the body.
#[derive(Debug, Clone)]
pub struct Varying {
    /// Headers added to the target's.
    pub headers: Vec<(String, String)>,
    /// The body (replaces the target's).
    pub body: Bytes,
}

/// Makes the next request's [`Varying`] parts; `None` once there are no more requests.
pub type Next = Arc<dyn Fn() -> Option<Varying> + Send + Sync>;

/// Where a connection's requests come from.
#[derive(Clone)]
enum Source {
    /// The target again and again.
    Same(Target),
    /// The target with the next varying parts, until they run out.
    Varying(Target, Next),
}

impl Source {
    fn target(&self) -> &Target {
        match self {
            Self::Same(target) | Self::Varying(target, _) => target,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests per second with a 2xx answer.
    pub rps: f64,
    /// Median latency in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency in microseconds.
    pub p99_us: u64,
    /// Non-2xx answers and transport errors.
    pub errors: u64,
}

impl LoadResult {
    /// The run with the median throughput.
    pub fn median(mut runs: Vec<LoadResult>) -> LoadResult {
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let mid = runs.len() / 2;
        runs.swap_remove(mid)
    }
}

const WARM_UP: Duration = Duration::from_millis(500);
/// Highest latency the histogram tracks (60 s, in µs).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Runs one load test against `target` (must be `http://127.0.0.1:…` or `http://[::1]:…`).
pub fn run(target: &Target, config: &LoadConfig) -> Result<LoadResult, String> {
    run_source(Source::Same(target.clone()), config)
}

/// Like [`run`], but each request is `target` with the next parts from `next` (shared by all
/// connections); ends early when `next` runs out, and then the rate counts the time used.
pub fn run_varying(target: &Target, next: Next, config: &LoadConfig) -> Result<LoadResult, String> {
    run_source(Source::Varying(target.clone(), next), config)
}

fn run_source(source: Source, config: &LoadConfig) -> Result<LoadResult, String> {
    let target = source.target();
    let uri: hyper::Uri = target
        .url
        .parse()
        .map_err(|e| format!("bad url {}: {e}", target.url))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    if host != "127.0.0.1" && host != "::1" && host != "localhost" {
        return Err(format!("load tests only target loopback, not {host}"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(drive(uri, source, config.clone()))
}

/// What one connection measured.
struct Measured {
    histogram: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// When its requests ran out, if they did.
    ran_out: Option<Instant>,
}

async fn drive(uri: hyper::Uri, source: Source, config: LoadConfig) -> Result<LoadResult, String> {
    let started = Instant::now();
    let measure_from = started + WARM_UP;
    let stop_at = measure_from + config.duration;
    let tasks: Vec<_> = (0..config.connections)
        .map(|_| {
            tokio::spawn(connection(
                uri.clone(),
                source.clone(),
                measure_from,
                stop_at,
            ))
        })
        .collect();
    let mut histogram = new_histogram()?;
    let mut ok = 0u64;
    let mut errors = 0u64;
    let mut ran_out: Option<Instant> = None;
    for task in tasks {
        let measured = task.await.map_err(|e| e.to_string())??;
        histogram
            .add(measured.histogram)
            .map_err(|e| e.to_string())?;
        ok += measured.ok;
        errors += measured.errors;
        ran_out = ran_out.max(measured.ran_out);
    }
    // Requests that ran out early: the rate over the time they lasted (the last connection's).
    let window = ran_out.map_or(config.duration, |at| {
        at.saturating_duration_since(measure_from)
            .clamp(Duration::from_millis(1), config.duration)
    });
    Ok(LoadResult {
        rps: ok as f64 / window.as_secs_f64(),
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        errors,
    })
}

/// One keep-alive HTTP/1.1 connection to a loopback server.
pub struct Connection {
    /// Sends requests (one at a time).
    pub sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The task driving the connection; abort it when done.
    pub driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    /// `host:port`, for the `host` header.
    pub authority: String,
    /// The path and query of the URI it was opened for.
    pub path: String,
}

impl Connection {
    /// Connects (TCP_NODELAY) and handshakes with the server of `uri`.
    pub async fn open(uri: &hyper::Uri) -> Result<Self, String> {
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let stream = TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            sender,
            driver: tokio::spawn(conn),
            authority,
            path,
        })
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s.
pub fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| e.to_string())
}

async fn connection(
    uri: hyper::Uri,
    source: Source,
    measure_from: Instant,
    stop_at: Instant,
) -> Result<Measured, String> {
    let Connection {
        mut sender,
        driver,
        authority,
        path,
    } = Connection::open(&uri).await?;
    let mut histogram = new_histogram()?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut ran_out = None;
    let target = source.target();
    while Instant::now() < stop_at {
        let varying = match &source {
            Source::Same(_) => None,
            Source::Varying(_, next) => match next() {
                Some(parts) => Some(parts),
                None => {
                    ran_out = Some(Instant::now());
                    break;
                }
            },
        };
        let mut builder = Request::builder()
            .method(target.method.clone())
            .uri(path.as_str())
            .header("host", authority.as_str());
        let extra = varying.iter().flat_map(|v| &v.headers);
        for (name, value) in target.headers.iter().chain(extra) {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = varying.map_or_else(|| target.body.clone(), |v| v.body);
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let outcome = match sender.send_request(request).await {
            Ok(response) => {
                let success = response.status().is_success();
                response.into_body().collect().await.is_ok() && success
            }
            Err(_) => false,
        };
        if sent < measure_from {
            continue;
        }
        if outcome {
            ok += 1;
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
            histogram.saturating_record(micros.max(1));
        } else {
            errors += 1;
            if sender.ready().await.is_err() {
                break;
            }
        }
    }
    driver.abort();
    Ok(Measured {
        histogram,
        ok,
        errors,
        ran_out,
    })
}
