//! Fault injection, reproducible with a seed: 503 answers before anything is done, connections
//! dropped after a write committed, fixed latency and latency per `$batch` operation.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct FaultSettings {
    pub fail_rate: f64,
    pub drop_rate: f64,
    pub latency_ms: u64,
    pub latency_per_op_ms: u64,
}

/// A change sent to `POST /_emulator/faults`; absent fields keep their value.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    pub fail_rate: Option<f64>,
    pub drop_rate: Option<f64>,
    pub latency_ms: Option<u64>,
    pub latency_per_op_ms: Option<u64>,
    pub seed: Option<u64>,
}

pub struct Faults {
    pub settings: FaultSettings,
    rng: StdRng,
}

/// What happens to one API request.
#[derive(Debug, Clone, Copy)]
pub struct FaultDraw {
    pub fail: bool,
    pub drop_after_commit: bool,
}

impl Faults {
    pub fn new(settings: FaultSettings, seed: u64) -> Faults {
        Faults {
            settings,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Two draws per API request, always, so the sequence depends only on the seed and the
    /// order of requests (not on the rates).
    pub fn draw(&mut self) -> FaultDraw {
        let fail: f64 = self.rng.gen();
        let drop: f64 = self.rng.gen();
        FaultDraw {
            fail: fail < self.settings.fail_rate,
            drop_after_commit: drop < self.settings.drop_rate,
        }
    }

    pub fn apply(&mut self, update: &FaultUpdate) -> Result<(), String> {
        for rate in [update.fail_rate, update.drop_rate].into_iter().flatten() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("rates must be between 0 and 1, got {rate}"));
            }
        }
        if let Some(v) = update.fail_rate {
            self.settings.fail_rate = v;
        }
        if let Some(v) = update.drop_rate {
            self.settings.drop_rate = v;
        }
        if let Some(v) = update.latency_ms {
            self.settings.latency_ms = v;
        }
        if let Some(v) = update.latency_per_op_ms {
            self.settings.latency_per_op_ms = v;
        }
        if let Some(seed) = update.seed {
            self.rng = StdRng::seed_from_u64(seed);
        }
        Ok(())
    }
}
