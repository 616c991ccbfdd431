//! What the Bittensor chain takes from the Leaderboard: the weight vector (`weights`), the call
//! (`call_data`, `push`), the validator's hotkey (`keyfile`), and the node (`node`, `online`):
//! `gradients weights push` (`cli`).

pub mod call_data;
pub mod cli;
pub mod keyfile;
pub mod node;
pub mod online;
pub mod push;
pub mod ss58;
pub mod tlock;
pub mod weights;
