"""The loader, target-intercom-postgres (target-postgres that applies the tables first), and the table tool."""
