// Package web is Outpost's server-rendered user interface: a login page, the
// list of environments, one page per environment showing its latest
// snapshot and the history of snapshot pushes, and the edge stacks with
// their status on each environment (/stacks, /stacks/{id}).
//
// Pages are html/template files and a stylesheet embedded in the binary; there
// is no build step and no JavaScript framework (one small script copies the
// edge key). The package talks to the server only through the Backend
// interface it declares, so it never sees the store or the wire protocol's
// transport.
//
// # Caveats
//
//   - Every page but /login checks the outpost_token cookie with
//     Backend.Authenticate on each request; there is no session state here.
//   - State-changing requests (POST /login, POST /logout) are refused when a
//     browser says they come from another origin (Sec-Fetch-Site, else Origin
//     against Host), on top of the SameSite=Strict cookie. GET handlers must
//     never change state: the check lets safe methods through.
//   - The Content-Security-Policy allows only the embedded stylesheet and
//     script (by hash): templates must not add inline style or event handler
//     attributes, and charts are SVG drawn with presentation attributes.
//   - Relative times ("3 min ago", "Up 5 minutes") are computed when the page
//     is rendered, against the server's clock; the snapshot itself carries
//     only absolute Unix times.
package web
