# Placeholder; see below.
