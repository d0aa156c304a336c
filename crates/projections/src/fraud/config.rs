//! Alert thresholds, with defaults and the `VAXLEDGER_ALERT_*` environment variables that
//! override them.

use serde::Serialize;

/// Largest window accepted, in minutes (one week).
const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;
/// Largest count threshold accepted.
const MAX_THRESHOLD: u32 = 100_000;

/// Thresholds of the alerts computed by the fraud projector.
///
/// The event log stores only the reason of a rejected code, never the digits tried. So
/// enumeration (codes tried in sequence) is detected from counts and timing: many `wrong_code`
/// rejections by one verifier in a short window, on one appointment or spread over many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FraudConfig {
    /// Trailing window of the `verifier_rejections` and `enumeration_spread` alerts, in minutes.
    pub window_minutes: u32,
    /// Code rejections (any reason) by one verifier inside `window_minutes` that raise
    /// `verifier_rejections`.
    pub verifier_rejections: u32,
    /// Trailing window of the `enumeration_appointment` alert, in minutes.
    pub enumeration_window_minutes: u32,
    /// `wrong_code` rejections by one verifier on one appointment inside
    /// `enumeration_window_minutes` that raise `enumeration_appointment`.
    pub enumeration_attempts: u32,
    /// Distinct appointments with a `wrong_code` rejection by one verifier inside
    /// `window_minutes` that raise `enumeration_spread`.
    pub spread_appointments: u32,
}

impl Default for FraudConfig {
    /// Estimates: a busy centre verifies about 40 codes an hour, and an honest verifier gets a
    /// mistyped code now and then, rarely more than two for one beneficiary.
    fn default() -> Self {
        Self { window_minutes: 60, verifier_rejections: 10, enumeration_window_minutes: 10, enumeration_attempts: 3, spread_appointments: 5 }
    }
}

/// An alert threshold variable has an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is invalid: {expected}")]
pub struct ConfigError {
    /// Environment variable name.
    pub variable: &'static str,
    /// Value found.
    pub value: String,
    /// Description of a valid value.
    pub expected: String,
}

impl FraudConfig {
    /// Window of `verifier_rejections` and `enumeration_spread`, in minutes.
    pub const ENV_WINDOW_MINUTES: &'static str = "VAXLEDGER_ALERT_WINDOW_MINUTES";
    /// Threshold of `verifier_rejections`.
    pub const ENV_VERIFIER_REJECTIONS: &'static str = "VAXLEDGER_ALERT_VERIFIER_REJECTIONS";
    /// Window of `enumeration_appointment`, in minutes.
    pub const ENV_ENUMERATION_WINDOW_MINUTES: &'static str = "VAXLEDGER_ALERT_ENUMERATION_WINDOW_MINUTES";
    /// Threshold of `enumeration_appointment`.
    pub const ENV_ENUMERATION_ATTEMPTS: &'static str = "VAXLEDGER_ALERT_ENUMERATION_ATTEMPTS";
    /// Threshold of `enumeration_spread`.
    pub const ENV_SPREAD_APPOINTMENTS: &'static str = "VAXLEDGER_ALERT_SPREAD_APPOINTMENTS";

    /// Reads the thresholds from the process environment; unset variables keep their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the thresholds through `lookup`, which returns a variable's value when set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let read = |variable: &'static str, default: u32, max: u32| -> Result<u32, ConfigError> {
            let Some(value) = lookup(variable) else { return Ok(default) };
            match value.trim().parse::<u32>() {
                Ok(parsed) if (1..=max).contains(&parsed) => Ok(parsed),
                _ => Err(ConfigError { variable, value, expected: format!("a whole number from 1 to {max}") }),
            }
        };
        Ok(Self {
            window_minutes: read(Self::ENV_WINDOW_MINUTES, defaults.window_minutes, MAX_WINDOW_MINUTES)?,
            verifier_rejections: read(Self::ENV_VERIFIER_REJECTIONS, defaults.verifier_rejections, MAX_THRESHOLD)?,
            enumeration_window_minutes: read(Self::ENV_ENUMERATION_WINDOW_MINUTES, defaults.enumeration_window_minutes, MAX_WINDOW_MINUTES)?,
            enumeration_attempts: read(Self::ENV_ENUMERATION_ATTEMPTS, defaults.enumeration_attempts, MAX_THRESHOLD)?,
            spread_appointments: read(Self::ENV_SPREAD_APPOINTMENTS, defaults.spread_appointments, MAX_THRESHOLD)?,
        })
    }

    /// Returns a stable text form, stored beside the alerts so that a change of thresholds
    /// triggers a rebuild.
    pub(crate) fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn window_ms(&self) -> i64 {
        i64::from(self.window_minutes) * 60_000
    }

    pub(crate) fn enumeration_window_ms(&self) -> i64 {
        i64::from(self.enumeration_window_minutes) * 60_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn config_defaults_when_unset() {
        assert_eq!(FraudConfig::from_lookup(lookup(&[])).unwrap(), FraudConfig::default());
    }

    #[test]
    fn config_reads_variables() {
        let config = FraudConfig::from_lookup(lookup(&[
            ("VAXLEDGER_ALERT_VERIFIER_REJECTIONS", "4"),
            ("VAXLEDGER_ALERT_WINDOW_MINUTES", " 30 "),
        ]))
        .unwrap();
        assert_eq!(config.verifier_rejections, 4);
        assert_eq!(config.window_minutes, 30);
        assert_eq!(config.enumeration_attempts, FraudConfig::default().enumeration_attempts);
    }

    #[test]
    fn config_rejects_bad_values() {
        for value in ["0", "-1", "ten", "", "20000"] {
            let err = FraudConfig::from_lookup(lookup(&[("VAXLEDGER_ALERT_WINDOW_MINUTES", value)])).unwrap_err();
            assert_eq!(err.variable, "VAXLEDGER_ALERT_WINDOW_MINUTES", "{value}");
        }
    }
}
