"""Journey analysis: stage chains, funnels, user profiles and their report."""
