//! Placeholder until the streaming decoder lands.
