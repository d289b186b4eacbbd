//! The offline reasoner: plans the tool calls for a report and applies the USE-method rules to
//! what they return. Rules live per area ([`host`] today); each proposes one hypothesis per
//! taxonomy category it covers and cites the tool call that decides it.

pub mod host;

use crate::agent::triage::ReportHints;
use crate::taxonomy::Category;

/// The host categories in the order the USE sweep checks them, with the report's suspects first.
pub fn host_order(hints: &ReportHints) -> Vec<Category> {
    let mut order: Vec<Category> = hints
        .suspects
        .iter()
        .copied()
        .filter(|c| host::COVERS.contains(c))
        .collect();
    for c in host::COVERS {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    order
}
