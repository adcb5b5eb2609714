// js-libp2p 3.x calls Promise.withResolvers, which node only ships from 22 on.
// peer.mjs imports this module first: ES modules evaluate their imports in
// order, so this runs before any libp2p module is evaluated.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
