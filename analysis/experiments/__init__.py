"""Small-scale reproductions of the Minitron paper's studies, returning plain data (notebooks and `experiment`)."""
