"""The staff's live screens: the inbox and conversation pane, the playground, and their frames."""
