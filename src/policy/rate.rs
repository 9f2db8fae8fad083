//! Site rate limits: each client's requests to a site are counted in
//! fixed windows of the site's `rate_limit` (1 s for "r/s", 60 s for
//! "r/m"), in the shared dict so that every worker counts together.
//!
//! A window's counter is the key `r|<site>|<client>|<slot>` (slot: the
//! window's number since the epoch), kept one second longer than the
//! window. Counters are expendable ([`crate::store::Store::counter`]): when
//! the dict is nearly full a new one is refused, and the request passes.

use crate::store::Store;

/// The dict key of a client's counter for window `slot` of `site`.
pub fn key(site: &str, client: &str, slot: u64) -> String {
    format!("r|{site}|{client}|{slot}")
}

/// A request over its site's limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Over {
    /// The client's requests in this window, this one included.
    pub count: u64,
    /// The first request over the limit in this window (the one that
    /// records an event).
    pub first: bool,
    /// Seconds until the window ends.
    pub retry_after: f64,
}

/// Counts a request of `client` to `site`, whose limit is `limit`
/// requests per `window_s` seconds; `Some` when it is over the limit.
pub fn hit(st: &Store<'_>, site: &str, client: &str, limit: u32, window_s: u32) -> Option<Over> {
    if limit == 0 || window_s == 0 {
        return None;
    }
    let now = st.now_ms as f64 / 1000.0;
    let window = f64::from(window_s);
    let slot = (now / window).floor();
    let n = st
        .counter(&key(site, client, slot as u64), 1.0, window + 1.0)
        .ok()?;
    if n <= f64::from(limit) {
        return None;
    }
    Some(Over {
        count: n as u64,
        first: n == f64::from(limit) + 1.0,
        retry_after: (slot + 1.0) * window - now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::Fixture;
    use crate::store::Dict;

    #[test]
    fn windows_count_and_end() {
        let f = Fixture::new(100_000);
        let d = &f.dict;
        let st = |now_ms| f.store(now_ms);
        let now = 1_700_000_000_250;
        for _ in 0..3 {
            assert_eq!(hit(&st(now), "shop", "192.0.2.1", 3, 1), None);
        }
        let over = hit(&st(now + 100), "shop", "192.0.2.1", 3, 1).unwrap();
        assert_eq!((over.count, over.first), (4, true));
        assert!((over.retry_after - 0.65).abs() < 1e-6);
        assert!(
            !hit(&st(now + 200), "shop", "192.0.2.1", 3, 1)
                .unwrap()
                .first
        );
        // another client, another site: counted apart
        assert_eq!(hit(&st(now), "shop", "192.0.2.2", 3, 1), None);
        assert_eq!(hit(&st(now), "blog", "192.0.2.1", 3, 1), None);
        // the next window starts afresh
        assert_eq!(hit(&st(now + 800), "shop", "192.0.2.1", 3, 1), None);
        assert_eq!(d.get_num("r|shop|192.0.2.1|1700000000").unwrap(), Some(5.0));
        // per minute: one window of 60 s, kept 61 s
        assert_eq!(hit(&st(now), "shop", "192.0.2.1", 1, 60), None);
        let over = hit(&st(now), "shop", "192.0.2.1", 1, 60).unwrap();
        assert!((over.retry_after - 39.75).abs() < 1e-6);
    }
}
