//! Reasoners: what reads the evidence and moves hypotheses on the board.
//!
//! Today there is one, the built-in [`offline`] reasoner: deterministic rules over the same tools
//! a model would call. It needs no API key and no network, so oncall is useful out of the box.
//! A reasoner proposes and cites; the board decides status, and the registry decides what runs.

pub mod offline;
