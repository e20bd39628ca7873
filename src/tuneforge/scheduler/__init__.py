"""The server's background side: launches trainer processes, tails their run folders, delivers webhooks."""
