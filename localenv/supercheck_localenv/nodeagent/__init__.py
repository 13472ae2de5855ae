"""The node agent: the local stand-in for kubelet and a container runtime.

It registers a Node, keeps it Ready, and runs the containers of the pods bound to it as
local processes (one mount namespace and one set of cgroups per container, as the
container's user), reporting their lifecycle through the pods/status subresource and
serving `kubectl logs`. See docs/node-agent.md.

Modules, one concern each:
  config      command line -> AgentConfig
  kubeapi     JSON client on a thread pool; the pod list+watch thread
  node        Node registration, Lease and Ready heartbeat
  agent       wiring: watch events -> pod workers; log lookups
  podworker   one pod's lifecycle (volumes, init containers, restarts, deadline, deletion)
  podstatus   pure: container tracks -> pod status (phase, conditions, container states)
  envvars     pure: env, envFrom, valueFrom, $(VAR) expansion
  volumes     pure contents of volumes + writing them to the state dir
  mounts      pure: a container's bind mounts
  containers  the runtime: spawn, log pumping, kernel or sampled limits, reaping
  cgroups     each container's cgroup v1 cpu and memory groups (quota, shares, OOM killer)
  identity    pure: the user, groups and securityContext flags a container runs with
  launcher    runs in the child: cgroups, mount namespace, bind mounts, user switch, exec
  proctree    finding, measuring and killing a container's processes
  logformat   CRI log files and `kubectl logs` queries
  logserver   the HTTPS endpoint the API server proxies `kubectl logs` to
  events      Kubernetes Events (best effort)
  quantity    resource quantities
"""
