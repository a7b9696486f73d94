# Converts an undirected edge list with dense 0-based ids ("u v" per line,
# '#' or '%' comments) to METIS's graph format: a "vertices edges" header,
# then for each vertex (numbered from 1) the list of its neighbours.
# Repeated edges and self-loops are dropped. Holds the graph in memory: for
# graphs of up to a few million edges.
/^[#%]/ { next }
NF >= 2 {
  u = $1 + 0; v = $2 + 0
  if (u == v) next
  key = (u < v) ? u " " v : v " " u
  if (key in seen) next
  seen[key] = 1
  adj[u] = adj[u] " " (v + 1)
  adj[v] = adj[v] " " (u + 1)
  m++
  if (u + 1 > n) n = u + 1
  if (v + 1 > n) n = v + 1
}
END {
  print n, m
  for (i = 0; i < n; i++) print substr(adj[i], 2)
}
