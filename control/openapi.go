package control

import _ "embed"

// OpenAPI is the OpenAPI 3 document of the control API, served at
// GET /v1/openapi.json. A test in package gateway checks that it lists exactly the
// routes the gateway serves, and one here that its schemas have exactly the JSON
// fields of this package's types.
//
//go:embed openapi.json
var OpenAPI []byte
