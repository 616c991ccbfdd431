//! What the Bittensor chain takes from the Leaderboard. The subnet's parameters and the
//! hotkey → uid map are inputs here; reading them from the chain and submitting are not built yet.

pub mod call_data;
pub mod cli;
pub mod push;
pub mod ss58;
pub mod weights;
