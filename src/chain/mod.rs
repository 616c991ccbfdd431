//! What the Bittensor chain takes from the Leaderboard. Pure: the subnet's parameters and the
//! hotkey → uid map are inputs here; reading them from the chain and submitting are not built yet.

pub mod weights;
