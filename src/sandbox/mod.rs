pub mod heat;
