// The /docs page: Swagger UI (vendored, docs/api.md) over this server's /openapi.json,
// with the search box ("filter") and "Try it out".
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    filter: true,
    deepLinking: false,   // its links inside the summary buttons are nested controls (axe)
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    validatorUrl: null,           // no outside validator: nothing leaves this server
    persistAuthorization: false,
  });
});
