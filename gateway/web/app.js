// chatmesh web client (protocol v1). Static, no build step.
"use strict";
document.getElementById("status").textContent = "chatmesh gateway is up";
