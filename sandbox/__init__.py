"""Local stand-ins for the AWS services the collection provisions (see README.md)."""
