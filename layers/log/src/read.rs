//! Reads: the committed value of an address, from the map of logged blocks or from home.

use crate::error::{LogError, Result};
use crate::state::Inner;
use txdisk_disk::{Addr, Block, DiskError};

/// Home reads that race installations before a read takes the installer's lock.
const READ_ATTEMPTS: usize = 8;

impl Inner {
    /// The committed value of `addr` (installed or still in the log).
    pub fn read(&self, addr: Addr) -> Result<Block> {
        self.check_data_addr(addr)?;
        for _ in 0..READ_ATTEMPTS {
            let install_gen = {
                let state = self.state.lock();
                Inner::usable(&state)?;
                if let Some((seq, block)) = state.logged.get(&addr) {
                    let stale = crate::bug_active!(StaleLiveRead) && *seq > state.durable_seq;
                    if !stale {
                        return Ok((**block).clone());
                    }
                }
                state.install_gen
            };
            // Not in the log: the home block holds the newest committed value. Only an
            // installation that started after the check above could be writing it now (an
            // earlier one would have left the address in the map), and then a torn read is
            // possible on a real file: read again.
            let block = self.read_home(addr)?;
            if self.state.lock().install_gen == install_gen {
                return Ok(block);
            }
        }
        // Installations keep starting: read with none running.
        let _no_installer = self.install_lock.lock();
        {
            let state = self.state.lock();
            if let Some((_, block)) = state.logged.get(&addr) {
                return Ok((**block).clone());
            }
        }
        self.read_home(addr)
    }

    /// The home block of `addr`; one that fails verification is reported by its address.
    fn read_home(&self, addr: Addr) -> Result<Block> {
        self.disk
            .read(self.sb.data_start + addr)
            .map_err(|source| match source {
                DiskError::Corrupt { .. } => LogError::DamagedBlock { addr, source },
                source => source.into(),
            })
    }
}
