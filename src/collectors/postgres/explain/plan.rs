//! A plan as evidence: EXPLAIN (FORMAT JSON) summarized to the costliest nodes, with findings
//! in plain words (filtered seq scans, sorts spilling to disk, nested loops with large inner
//! sides).

use crate::collectors::postgres::{evidence_sql, tables_in};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plan node worth a look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The node's own cost (its total minus its children's).
    pub self_cost: f64,
    pub plan_rows: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_rows: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_removed_by_filter: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queryid: Option<i64>,
    pub query: String,
    pub tables: Vec<String>,
    pub total_cost: f64,
    pub plan_rows: f64,
    /// The costliest nodes, most expensive first.
    pub costly_nodes: Vec<PlanNode>,
    /// Plain-language findings: seq scans of big tables with a filter, sorts spilling to disk,
    /// nested loops with large inner sides.
    pub findings: Vec<String>,
    pub analyzed: bool,
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(|s| evidence_sql(s, 160))
}

fn walk(plan: &Value, out: &mut Vec<PlanNode>, findings: &mut Vec<String>) {
    let children: Vec<&Value> = plan
        .get("Plans")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let child_cost: f64 = children.iter().map(|c| num(c, "Total Cost")).sum();
    let node = PlanNode {
        node: plan
            .get("Node Type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        relation: plan
            .get("Relation Name")
            .and_then(Value::as_str)
            .map(str::to_string),
        index: plan
            .get("Index Name")
            .and_then(Value::as_str)
            .map(str::to_string),
        self_cost: ((num(plan, "Total Cost") - child_cost).max(0.0) * 10.0).round() / 10.0,
        plan_rows: num(plan, "Plan Rows"),
        filter: text(plan, "Filter"),
        actual_rows: plan.get("Actual Rows").and_then(Value::as_f64),
        rows_removed_by_filter: plan.get("Rows Removed by Filter").and_then(Value::as_f64),
        actual_ms: plan.get("Actual Total Time").and_then(Value::as_f64),
        sort_space: plan
            .get("Sort Space Type")
            .and_then(Value::as_str)
            .map(|t| format!("{t} {} kB", num(plan, "Sort Space Used"))),
        loops: plan.get("Actual Loops").and_then(Value::as_f64),
    };
    if node.node == "Seq Scan" && node.filter.is_some() {
        let rel = node.relation.clone().unwrap_or_default();
        match node.rows_removed_by_filter {
            Some(removed) => findings.push(format!(
                "Seq Scan on {rel} removed {removed} rows by filter {} to return {}",
                node.filter.clone().unwrap_or_default(),
                node.actual_rows.unwrap_or(0.0)
            )),
            None => findings.push(format!(
                "Seq Scan on {rel} with filter {} (no index used; cost {})",
                node.filter.clone().unwrap_or_default(),
                node.self_cost
            )),
        }
    }
    if node
        .sort_space
        .as_deref()
        .is_some_and(|s| s.starts_with("Disk"))
    {
        findings.push(format!(
            "Sort spilled to disk ({})",
            node.sort_space.clone().unwrap_or_default()
        ));
    }
    if node.node == "Nested Loop"
        && let Some(inner) = children.get(1)
    {
        let inner_rows = num(inner, "Plan Rows")
            * inner
                .get("Actual Loops")
                .and_then(Value::as_f64)
                .unwrap_or(num(children[0], "Plan Rows"));
        if inner_rows > 100_000.0 {
            findings.push(format!(
                "Nested Loop with a large inner side (~{inner_rows} rows visited)"
            ));
        }
    }
    out.push(node);
    for c in children {
        walk(c, out, findings);
    }
}

/// Summarizes EXPLAIN (FORMAT JSON) output.
pub fn summarize(
    explain: &Value,
    query: &str,
    queryid: Option<i64>,
) -> Result<PlanSummary, String> {
    let top = explain
        .get(0)
        .and_then(|v| v.get("Plan"))
        .ok_or("EXPLAIN returned no plan")?;
    let mut nodes = vec![];
    let mut findings = vec![];
    walk(top, &mut nodes, &mut findings);
    let analyzed = top.get("Actual Rows").is_some();
    nodes.sort_by(|a, b| b.self_cost.total_cmp(&a.self_cost));
    nodes.truncate(4);
    Ok(PlanSummary {
        queryid,
        query: evidence_sql(query, 300),
        tables: tables_in(query),
        total_cost: num(top, "Total Cost"),
        plan_rows: num(top, "Plan Rows"),
        costly_nodes: nodes,
        findings,
        analyzed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_finds_the_filtered_seq_scan_and_the_disk_sort() {
        let plan = json!([{"Plan": {"Node Type": "Sort", "Total Cost": 20000.0, "Plan Rows": 10.0, "Sort Space Type": "Disk", "Sort Space Used": 5120.0, "Actual Rows": 10.0,
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "orders", "Total Cost": 18000.0, "Plan Rows": 10.0, "Filter": "(customer_ref = 'abc'::text)", "Actual Rows": 10.0, "Rows Removed by Filter": 999990.0}]}}]);
        let s = summarize(
            &plan,
            "SELECT * FROM orders WHERE customer_ref = $1 ORDER BY id",
            Some(7),
        )
        .unwrap();
        assert!(s.analyzed);
        assert_eq!(s.tables, vec!["orders"]);
        assert_eq!(s.costly_nodes[0].node, "Seq Scan");
        assert_eq!(s.costly_nodes[0].self_cost, 18000.0);
        assert!(
            s.findings[1].contains("Seq Scan on orders removed 999990 rows"),
            "{:?}",
            s.findings
        );
        assert!(
            s.findings[0].contains("Sort spilled to disk"),
            "{:?}",
            s.findings
        );
        assert!(
            !s.costly_nodes[0].filter.as_deref().unwrap().contains("abc"),
            "literals are dropped from evidence"
        );
        assert!(summarize(&json!([]), "x", None).is_err());
    }
}
