//! A client of the Confluent schema registry API.
