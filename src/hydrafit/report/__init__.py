"""A fit's outcome -> the run directory: each file written by one function, for a single run (from
Lightning callbacks) and for every member of a population (member.write_member) alike."""
