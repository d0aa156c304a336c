//! Vaccine catalogue: name, manufacturer, number of doses and the minimum interval between them.

use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;

/// One vaccine the sessions may offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vaccine {
    /// Name as printed on certificates, upper case, such as `COVISHIELD`.
    pub name: String,
    /// Manufacturer printed on certificates.
    pub manufacturer: String,
    /// Doses in the primary schedule.
    pub total_doses: u8,
    /// Minimum days between dose N and dose N+1.
    pub min_interval_days: u32,
}

/// The set of vaccines in use; configurable, with India's 2021 schedule as the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaccineCatalogue {
    /// Vaccines by name.
    pub vaccines: Vec<Vaccine>,
}

impl Default for VaccineCatalogue {
    /// Intervals as set by India's health ministry in 2021: Covishield 84 days (from 13 May
    /// 2021), Covaxin 28 days, Corbevax 28 days.
    fn default() -> Self {
        let vaccine = |name: &str, manufacturer: &str, days| Vaccine {
            name: name.into(),
            manufacturer: manufacturer.into(),
            total_doses: 2,
            min_interval_days: days,
        };
        Self {
            vaccines: vec![
                vaccine("COVISHIELD", "Serum Institute of India", 84),
                vaccine("COVAXIN", "Bharat Biotech", 28),
                vaccine("CORBEVAX", "Biological E", 28),
            ],
        }
    }
}

impl VaccineCatalogue {
    /// Finds a vaccine by name, ignoring case.
    pub fn find(&self, name: &str) -> Result<&Vaccine, Rejection> {
        self.vaccines
            .iter()
            .find(|vaccine| vaccine.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let known: Vec<&str> = self.vaccines.iter().map(|v| v.name.as_str()).collect();
                Rejection::invalid("vaccine", format!("unknown vaccine {name:?}; known: {}", known.join(", ")))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_find_ignores_case() {
        let catalogue = VaccineCatalogue::default();
        assert_eq!(catalogue.find("covaxin").unwrap().min_interval_days, 28);
    }

    #[test]
    fn catalogue_find_unknown_names_field() {
        let err = VaccineCatalogue::default().find("SPUTNIK-X").unwrap_err();
        assert_eq!(err.field(), Some("vaccine"));
    }
}
