"""Text rules shared by every side: tokens and their count, sentences, numerals, the table format."""
