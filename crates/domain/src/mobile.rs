//! Mobile aggregate: the beneficiaries registered under one mobile number (at most four).

use crate::events::Event;
use crate::ids::BeneficiaryId;

/// Most beneficiaries one mobile number may register, as on CoWIN.
pub const MAX_BENEFICIARIES_PER_MOBILE: usize = 4;

/// Beneficiaries linked to a mobile number, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mobile {
    /// Linked beneficiaries, in registration order.
    pub beneficiaries: Vec<BeneficiaryId>,
}

impl Mobile {
    /// Folds one event of the mobile stream into the state.
    pub fn apply(&mut self, event: &Event) {
        if let Event::MobileBeneficiaryAdded { beneficiary_id, .. } = event {
            self.beneficiaries.push(*beneficiary_id);
        }
    }

    /// Returns whether the beneficiary is registered under this mobile number.
    pub fn owns(&self, beneficiary_id: &BeneficiaryId) -> bool {
        self.beneficiaries.contains(beneficiary_id)
    }
}
