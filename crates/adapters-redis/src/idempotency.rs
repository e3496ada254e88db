//! The idempotency cache shared by every node: one Redis string per key, in front of the durable
//! store.
//!
//! # Keys
//!
//! An entry lives at `{prefix}:idem:{<sha256>}`, where `<sha256>` is the lowercase hex SHA-256 of
//! `scope ‖ 0x00 ‖ key`. Scope and key are free text (a key may contain `{`, `}` or `|`), so
//! they are hashed rather than written out: the braces are then a well-formed Redis Cluster hash
//! tag whatever the client sent, and the name has a fixed length. The input is unambiguous
//! because an [`IdempotencyKey`] is printable ASCII and never contains NUL: the last NUL always
//! separates scope from key, even if a scope contained one.
//!
//! # Values
//!
//! A compact binary layout, big-endian throughout:
//!
//! | bytes | lease (`L`)                        | completed (`C`)                        |
//! |-------|------------------------------------|----------------------------------------|
//! | 1     | `b'L'`                             | `b'C'`                                 |
//! | 1     | format version, `1`                | format version, `1`                    |
//! | 32    | request fingerprint                | request fingerprint                    |
//! | 8 + 4 | `lease_until`: i64 s + u32 ns      | `expires_at`: i64 s + u32 ns           |
//! | 2     |                                    | HTTP status                            |
//! | 4     |                                    | header count, then per header: u32 length + name bytes, u32 length + value bytes (UTF-8) |
//! | 4 + n |                                    | u32 body length + body bytes           |
//!
//! The first byte tells a lease marker from a completed response in every format version, so
//! [`IdempotencyCache::remove`] can keep completed entries without decoding them. A value that
//! does not decode (another version, tampering) reads as absent and is logged: the durable store
//! then answers.
//!
//! # Expiry
//!
//! Every entry is written with `PX`, until its `lease_until` or `expires_at` measured from this
//! node's clock (at least 1 ms). Redis' expiry only cleans up: the layered store compares the
//! instants stored in the value with its own "now".

use std::fmt::Write as _;
use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::idempotency::{
    CachedState, IdempotencyCache, IdempotencyKey, RequestFingerprint, Scope, StoredResponse,
};
use redis::Script;
use ring::digest::{Context, SHA256};

use crate::RedisPool;
use crate::pool::unavailable;

/// First byte of a lease marker.
const LEASE_TAG: u8 = b'L';
/// First byte of a completed response.
const COMPLETED_TAG: u8 = b'C';
/// Second byte of every value written by this version.
const FORMAT_VERSION: u8 = 1;

/// KEYS[1]: the entry. Deletes it only when it is a lease marker (first byte `L`).
/// Returns the number of keys deleted (0 or 1).
const REMOVE_LEASE_LUA: &str = r"
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) == 'L' then
  return redis.call('DEL', KEYS[1])
end
return 0
";

static REMOVE_LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_LEASE_LUA));

/// The [`IdempotencyCache`] shared by every node using the same Redis and key prefix.
#[derive(Debug, Clone)]
pub struct RedisIdempotencyCache {
    pool: RedisPool,
}

impl RedisIdempotencyCache {
    /// A cache storing its entries through `pool`.
    pub fn new(pool: RedisPool) -> Self {
        Self { pool }
    }

    /// The Redis key of `key` in `scope`: `{prefix}:idem:{<hex SHA-256 of scope, NUL, key>}`.
    pub fn key(&self, scope: &Scope, key: &IdempotencyKey) -> String {
        let mut ctx = Context::new(&SHA256);
        ctx.update(scope.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(key.as_str().as_bytes());
        let mut hex = String::with_capacity(64);
        for b in ctx.finish().as_ref() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
        }
        self.pool.key(&format!("idem:{{{hex}}}"))
    }

    /// `SET redis_key value PX <ms until until> [NX]`; true when the value was set.
    async fn set(
        &self,
        redis_key: String,
        value: Vec<u8>,
        until: DateTime<Utc>,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let millis = (until - Utc::now()).num_milliseconds().max(1);
        let reply: Option<String> = self
            .pool
            .run(|mut conn| async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(redis_key).arg(value).arg("PX").arg(millis);
                if only_if_absent {
                    cmd.arg("NX");
                }
                cmd.query_async(&mut conn).await
            })
            .await?;
        Ok(reply.is_some())
    }
}

#[async_trait]
impl IdempotencyCache for RedisIdempotencyCache {
    async fn get(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
    ) -> Result<Option<CachedState>, StoreError> {
        let redis_key = self.key(scope, key);
        let fetched = redis_key.clone();
        let value: Option<Vec<u8>> =
            self.pool
                .run(|mut conn| async move {
                    redis::cmd("GET").arg(fetched).query_async(&mut conn).await
                })
                .await?;
        let Some(value) = value else {
            return Ok(None);
        };
        match decode(&value) {
            Ok(state) => Ok(Some(state)),
            Err(reason) => {
                tracing::warn!(
                    key = %redis_key,
                    len = value.len(),
                    reason,
                    "undecodable idempotency cache entry; treated as absent"
                );
                Ok(None)
            }
        }
    }

    async fn try_lease(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let value = encode_lease(fingerprint, lease_until);
        self.set(self.key(scope, key), value, lease_until, true)
            .await
    }

    async fn put_completed(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let value = encode_completed(fingerprint, response, expires_at)?;
        self.set(self.key(scope, key), value, expires_at, false)
            .await
            .map(drop)
    }

    async fn remove(&self, scope: &Scope, key: &IdempotencyKey) -> Result<(), StoreError> {
        let redis_key = self.key(scope, key);
        self.pool
            .run(|mut conn| async move {
                REMOVE_LEASE
                    .key(redis_key)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(drop)
    }
}

/// A lease marker: tag, version, fingerprint, `lease_until`.
fn encode_lease(fingerprint: &RequestFingerprint, lease_until: DateTime<Utc>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 32 + 12);
    out.extend_from_slice(&[LEASE_TAG, FORMAT_VERSION]);
    out.extend_from_slice(fingerprint.as_bytes());
    put_instant(&mut out, lease_until);
    out
}

/// A completed response: tag, version, fingerprint, `expires_at`, status, headers, body.
fn encode_completed(
    fingerprint: &RequestFingerprint,
    response: &StoredResponse,
    expires_at: DateTime<Utc>,
) -> Result<Vec<u8>, StoreError> {
    let headers_len: usize = response
        .headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum();
    let mut out = Vec::with_capacity(2 + 32 + 12 + 2 + 4 + headers_len + 4 + response.body.len());
    out.extend_from_slice(&[COMPLETED_TAG, FORMAT_VERSION]);
    out.extend_from_slice(fingerprint.as_bytes());
    put_instant(&mut out, expires_at);
    out.extend_from_slice(&response.status.to_be_bytes());
    put_len(&mut out, response.headers.len())?;
    for (name, value) in &response.headers {
        put_bytes(&mut out, name.as_bytes())?;
        put_bytes(&mut out, value.as_bytes())?;
    }
    put_bytes(&mut out, &response.body)?;
    Ok(out)
}

fn put_instant(out: &mut Vec<u8>, at: DateTime<Utc>) {
    out.extend_from_slice(&at.timestamp().to_be_bytes());
    out.extend_from_slice(&at.timestamp_subsec_nanos().to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len)
        .map_err(|_| unavailable(format!("a length of {len} does not fit the cache format")))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    put_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads a value written by [`encode_lease`] or [`encode_completed`]; the error says why not.
fn decode(value: &[u8]) -> Result<CachedState, &'static str> {
    let mut r = Reader(value);
    let [tag, version] = r.array()?;
    if version != FORMAT_VERSION {
        return Err("unknown format version");
    }
    let fingerprint = RequestFingerprint::from_bytes(r.take(32)?).ok_or("bad fingerprint")?;
    let at = r.instant()?;
    let state = match tag {
        LEASE_TAG => CachedState::Leased {
            fingerprint,
            lease_until: at,
        },
        COMPLETED_TAG => {
            let status = u16::from_be_bytes(r.array()?);
            let count = r.len()?;
            // Each header takes at least 8 bytes: never reserve more than the value could hold.
            let mut headers = Vec::with_capacity(count.min(r.0.len() / 8));
            for _ in 0..count {
                let name = r.string()?;
                let value = r.string()?;
                headers.push((name, value));
            }
            let len = r.len()?;
            let body = r.take(len)?.to_vec();
            CachedState::Completed {
                fingerprint,
                response: StoredResponse {
                    status,
                    headers,
                    body,
                },
                expires_at: at,
            }
        }
        _ => return Err("unknown entry kind"),
    };
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(state)
}

/// The unread rest of a value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| "truncated")
    }

    fn len(&mut self) -> Result<usize, &'static str> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| "length out of range")
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "header is not UTF-8")
    }

    fn instant(&mut self) -> Result<DateTime<Utc>, &'static str> {
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        DateTime::from_timestamp(secs, nanos).ok_or("instant out of range")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn fingerprint() -> RequestFingerprint {
        RequestFingerprint::compute("POST", "/a", "user:1", b"{}")
    }

    fn instant() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default()
    }

    fn response() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("location".into(), "/things/{7}|é".into()),
                ("x-empty".into(), String::new()),
            ],
            body: vec![0, 0xff, 0xfe, b'{', 0x80, 0],
        }
    }

    #[test]
    fn lease_round_trips() {
        let value = encode_lease(&fingerprint(), instant());
        assert_eq!(value[0], LEASE_TAG);
        assert_eq!(
            decode(&value),
            Ok(CachedState::Leased {
                fingerprint: fingerprint(),
                lease_until: instant(),
            })
        );
    }

    #[test]
    fn completed_round_trips() {
        for response in [
            response(),
            StoredResponse {
                status: 204,
                headers: vec![],
                body: vec![],
            },
        ] {
            let value = encode_completed(&fingerprint(), &response, instant())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(value[0], COMPLETED_TAG);
            assert_eq!(
                decode(&value),
                Ok(CachedState::Completed {
                    fingerprint: fingerprint(),
                    response,
                    expires_at: instant(),
                })
            );
        }
    }

    #[test]
    fn instants_keep_every_nanosecond_and_sign() {
        for at in [
            instant(),
            instant() + TimeDelta::nanoseconds(1),
            DateTime::from_timestamp(-1, 999_999_999).unwrap_or_default(),
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
        ] {
            let value = encode_lease(&fingerprint(), at);
            match decode(&value) {
                Ok(CachedState::Leased { lease_until, .. }) => assert_eq!(lease_until, at),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn damaged_values_do_not_decode() {
        let good = encode_completed(&fingerprint(), &response(), instant())
            .unwrap_or_else(|e| panic!("{e}"));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "prefix of {cut} bytes");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err("trailing bytes"));
        let mut version = good.clone();
        version[1] = 2;
        assert_eq!(decode(&version), Err("unknown format version"));
        let mut kind = good.clone();
        kind[0] = b'X';
        assert_eq!(decode(&kind), Err("unknown entry kind"));
        assert!(decode(b"{\"json\":true}").is_err());
        // A huge header count must not allocate or loop past the value.
        let mut count = encode_lease(&fingerprint(), instant());
        count[0] = COMPLETED_TAG;
        count.extend_from_slice(&200u16.to_be_bytes());
        count.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&count), Err("truncated"));
    }

    #[test]
    fn non_utf8_header_does_not_decode() {
        let mut value = encode_lease(&fingerprint(), instant());
        value[0] = COMPLETED_TAG;
        value.extend_from_slice(&200u16.to_be_bytes());
        value.extend_from_slice(&1u32.to_be_bytes());
        for part in [&[0xffu8][..], b"v"] {
            value.extend_from_slice(&1u32.to_be_bytes());
            value.extend_from_slice(part);
        }
        value.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(&value), Err("header is not UTF-8"));
    }
}
