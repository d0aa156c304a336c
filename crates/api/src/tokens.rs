//! Staff token rules shared by the CLI and the API.

use domain::ids::CentreId;
use projections::Projections;

use crate::http::problem::Problem;
use crate::service_db::Role;

/// Checks the centre scope of a staff token: verifiers and supervisors need a registered
/// centre; other roles take none. Returns the canonical centre id.
pub fn check_centre_scope(role: Role, centre_id: Option<&str>, projections: &Projections) -> Result<Option<String>, Problem> {
    let scoped = matches!(role, Role::Verifier | Role::Supervisor);
    match (scoped, centre_id) {
        (true, None) => Err(Problem::invalid("centre_id", format!("centre_id is required for a {} token", role.as_str()))),
        (false, Some(_)) => Err(Problem::invalid("centre_id", format!("a {} token is not scoped to a centre; omit centre_id", role.as_str()))),
        (false, None) => Ok(None),
        (true, Some(text)) => {
            let centre_id = CentreId::parse(text).map_err(Problem::from)?;
            let known = projections.centre(&centre_id.to_string()).map_err(|err| {
                tracing::error!(cause = %err, "centre lookup failed");
                Problem::internal()
            })?;
            if known.is_none() {
                return Err(Problem::not_found("centre_id", format!("centre {centre_id} not found; register it first")));
            }
            Ok(Some(centre_id.to_string()))
        }
    }
}
