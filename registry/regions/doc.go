// Package regions is the domain of the activation centre: which region a
// device belongs to, and how a device that knows only the centre's
// address learns its region's.
//
// Devices live in regions: each region is an iotgate node (or cluster)
// with its own store, holding its devices' secrets and data. The centre
// holds only a Directory (ProductKey/DeviceName → region, with the device
// id it has there) and never a secret or a byte of device data. It
// learns where a device lives by asking the regions (Region.Device),
// assigns it on first contact by Rules (source address, ProductKey,
// default), and makes the assignment sticky in the Directory.
//
// A signed first contact (Alibaba's pre-auth) is verified by a region,
// never by the centre: the centre relays the device's sign to the region
// holding the device, and the region that will serve the device issues
// the iotToken itself (Tokens), keyed by its own master key, so it checks
// that token later without asking anyone. A device whose rules pick
// another region than the one holding it is transferred (Region.Export,
// Region.Import) once its sign checked out; the transfer's credentials
// pass through the centre's memory and are never written there.
package regions
