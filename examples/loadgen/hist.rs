//! A log-linear latency histogram in nanoseconds (HDR style: 128 linear
//! sub-buckets per power of two, so any percentile is within 0.8% of the
//! true value). Fixed size, mergeable, no allocation per sample.

const SUB_BITS: u32 = 8;
const LINEAR: u64 = 1 << SUB_BITS; // values below this are exact
const HALF: u64 = LINEAR / 2;
const BUCKETS: usize = (LINEAR + (64 - SUB_BITS as u64) * HALF) as usize;

#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // >= SUB_BITS
    let shift = e - u64::from(SUB_BITS - 1);
    let m = v >> shift; // in [HALF, LINEAR)
    (LINEAR + (e - u64::from(SUB_BITS)) * HALF + (m - HALF)) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let k = i - LINEAR;
    let e = k / HALF + u64::from(SUB_BITS);
    let m = k % HALF + HALF;
    let shift = e - u64::from(SUB_BITS - 1);
    (m << shift) + ((1u64 << shift) >> 1)
}

impl Hist {
    pub fn record(&mut self, v: u64) {
        let i = index(v).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0 < q <= 1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// p50/p99/p99.9/max/mean in microseconds, as JSON.
    pub fn summary_us(&self) -> serde_json::Value {
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        let mean = if self.total == 0 {
            0
        } else {
            (self.sum / u128::from(self.total)) as u64
        };
        serde_json::json!({
            "samples": self.total,
            "p50": us(self.quantile(0.50)),
            "p90": us(self.quantile(0.90)),
            "p99": us(self.quantile(0.99)),
            "p999": us(self.quantile(0.999)),
            "max": us(self.max),
            "mean": us(mean),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_one_percent() {
        for v in [0u64, 1, 255, 256, 257, 1000, 12_345, 999_999, 1 << 40] {
            let back = value(index(v));
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> {back}");
        }
    }
}
